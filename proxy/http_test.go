package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestForwardedHeaders guards what the backend sees: the client's
// end-to-end headers intact, the proxy's forwarding headers set from the
// TCP peer (never from the client), hop-by-hop headers gone, the route's
// set_headers and remove_headers applied, path and query kept.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	backend := testutil.Serve(t, rec)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path:          "/wss",
		Backend:       "ws://" + backend,
		SetHeaders:    map[string]string{"X-App": "chat"},
		RemoveHeaders: []string{"X-Drop-Me"},
	}}})
	h := http.Header{
		"Origin":          {"https://chat.example.com"},
		"Cookie":          {"session=abc"},
		"Authorization":   {"Bearer t0ken"},
		"X-Real-Ip":       {"6.6.6.6"},
		"X-Forwarded-For": {"6.6.6.6, 7.7.7.7"},
		"Forwarded":       {"for=6.6.6.6"},
		"X-Drop-Me":       {"1"},
	}
	c := e.mustDial(ctx, "/wss/room%2F1?user=tom&x=1", &websocket.DialOptions{
		HTTPHeader: h, Host: "chat.example.com:443", Subprotocols: []string{"chat"},
	})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
	r := rec.last(t)
	for _, tc := range []struct{ header, want string }{
		{"X-Real-Ip", "127.0.0.1"},
		{"X-Forwarded-For", "127.0.0.1"},
		{"X-Forwarded-Proto", "https"},
		{"X-Forwarded-Host", "chat.example.com:443"},
		{"Forwarded", ""},
		{"Origin", "https://chat.example.com"},
		{"Cookie", "session=abc"},
		{"Authorization", "Bearer t0ken"},
		{"Sec-Websocket-Protocol", "chat"},
		{"Sec-Websocket-Version", "13"},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"X-Drop-Me", ""},
		{"X-App", "chat"},
	} {
		if got := strings.Join(r.Header[tc.header], ","); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.header, got, tc.want)
		}
	}
	if r.Host != "chat.example.com:443" {
		t.Errorf("Host %q, want the client's", r.Host)
	}
	if got := r.URL.RequestURI(); got != "/wss/room%2F1?user=tom&x=1" {
		t.Errorf("request URI %q", got)
	}
}

// TestHopByHopRemoved guards that connection-specific headers, including
// those the client's Connection header names, never reach the backend
// (RFC 9110 §7.6.1), while Upgrade and Connection are set afresh.
func TestHopByHopRemoved(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	e := startProxy(t, route("/wss", "ws://"+testutil.Serve(t, rec)))
	status, _, _ := rawRequest(t, ctx, e, "GET", "/wss", http.Header{
		"Upgrade": {"websocket"}, "Connection": {"keep-alive, Upgrade, X-Secret-Hop"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		"X-Secret-Hop": {"must not pass"}, "Keep-Alive": {"timeout=5"}, "Te": {"trailers"},
		"Proxy-Authorization": {"Basic eDp4"}, "X-Kept": {"yes"},
	})
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", status)
	}
	h := rec.last(t).Header
	for _, name := range []string{"X-Secret-Hop", "Keep-Alive", "Te", "Proxy-Authorization"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s reached the backend: %q", name, v)
		}
	}
	if h.Get("Connection") != "Upgrade" || h.Get("Upgrade") != "websocket" || h.Get("X-Kept") != "yes" {
		t.Errorf("backend headers: %v", h)
	}
}

// TestPathRewrite guards strip_prefix, a backend path (proxy_pass with a
// URI), and that dot segments are resolved before routing and forwarding.
func TestPathRewrite(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	backend := testutil.Serve(t, rec)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/wss", Backend: "ws://" + backend},
		{Path: "/strip", Backend: "ws://" + backend, StripPrefix: true},
		{Path: "/app/", Backend: "ws://" + backend + "/v2/"},
		{Path: "/other", Backend: "ws://" + backend + "/socket"},
		{Path: "/", Static: t.TempDir()},
	}})
	for _, tc := range []struct{ path, want string }{
		{"/wss", "/wss"},
		{"/wss/room?x=1", "/wss/room?x=1"},
		{"/strip", "/"},
		{"/strip/room?x=1", "/room?x=1"},
		{"/app/room", "/v2/room"},
		{"/other", "/socket"},
		{"/other/a", "/socket/a"},
		{"/wss/../wss/a/./b", "/wss/a/b"},
		{"//wss//a", "/wss/a"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := e.mustDial(ctx, tc.path, nil)
			roundTrip(t, ctx, c, websocket.MessageText, []byte("x"))
			c.Close(websocket.StatusNormalClosure, "")
			if got := rec.last(t).URL.RequestURI(); got != tc.want {
				t.Errorf("backend got %q, want %q", got, tc.want)
			}
		})
	}
	// A dot segment cannot escape a route into another one.
	resp, err := e.client.Get(e.url("https", "/wss/../secret"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/wss/../secret: %d, want 404 from the static route", resp.StatusCode)
	}
}

// TestHostRouting guards host and wildcard-host routes, and that a
// host-specific route wins over a host-less one, across the real path.
func TestHostRouting(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	tag := func(name string) string {
		return testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Write(r.Context(), websocket.MessageText, []byte(name))
			c.Close(websocket.StatusNormalClosure, "")
		}))
	}
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/wss", Backend: "ws://" + tag("any")},
		{Path: "/wss", Host: "chat.example.com", Backend: "ws://" + tag("chat")},
		{Path: "/wss", Host: "*.example.com", Backend: "ws://" + tag("wildcard")},
		{Path: "= /wss", Host: "exact.example.com", Backend: "ws://" + tag("exact")},
		{Path: "/", Host: "exact.example.com", Backend: "ws://" + tag("exact-root")},
	}})
	for _, tc := range []struct{ host, path, want string }{
		{"localhost", "/wss", "any"},
		{"chat.example.com", "/wss", "chat"},
		{"CHAT.example.com:8443", "/wss", "chat"},
		{"game.example.com", "/wss", "wildcard"},
		{"a.b.example.com", "/wss", "any"},
		{"exact.example.com", "/wss", "exact"},
		{"exact.example.com", "/wss/x", "exact-root"},
	} {
		c := e.mustDial(ctx, tc.path, &websocket.DialOptions{Host: tc.host})
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s%s: got %q (%v), want %q", tc.host, tc.path, got, err, tc.want)
		}
	}
}

// TestRefusals guards the status the client gets for each kind of failure,
// that the proxy marks its own errors, and that each gets one log line.
func TestRefusals(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	silent := rawBackend(t, func(c net.Conn) { // accepts, never answers
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
	wrongUpgrade := rawBackend(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
	})
	forbidding := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Reason", "no token")
		http.Error(w, "token required", http.StatusForbidden)
	}))
	e := startProxy(t, proxy.Config{
		Routes: []proxy.Route{
			{Path: "/down", Backend: "ws://" + testutil.ClosedPort(t)},
			// Only here: the other backends answer in time however loaded
			// the machine is.
			{Path: "/silent", Backend: "ws://" + silent, HandshakeTimeout: 200 * time.Millisecond},
			{Path: "/wrong", Backend: "ws://" + wrongUpgrade},
			{Path: "/forbid", Backend: "ws://" + forbidding},
			{Path: "/echo", Backend: echoBackend(t, echo.Options{})},
		},
	})
	ws := http.Header{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	with := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		mark               string // X-Wssproxy-Error, "" for a backend's answer
		body               string
	}{
		{"no route", "GET", "/nowhere", ws, 404, "no-route", ""},
		{"CONNECT", "CONNECT", "/", http.Header{}, 405, "method", "CONNECT"},
		{"backend refuses connection", "GET", "/down", ws, 502, "backend-dial", ""},
		{"backend never answers", "GET", "/silent", ws, 504, "backend-timeout", ""},
		{"backend upgrades to something else", "GET", "/wrong", ws, 502, "backend-bad-upgrade", ""},
		{"backend refusal relayed", "GET", "/forbid", ws, 403, "", "token required"},
		{"missing key", "GET", "/echo", with(ws, "Sec-Websocket-Key", ""), 400, "bad-handshake", "Sec-WebSocket-Key"},
		{"short key", "GET", "/echo", with(ws, "Sec-Websocket-Key", "c2hvcnQ="), 400, "bad-handshake", "16 bytes"},
		{"wrong version", "GET", "/echo", with(ws, "Sec-Websocket-Version", "8"), 426, "bad-handshake", "13"},
		{"no connection upgrade", "GET", "/echo", with(ws, "Connection", "keep-alive"), 400, "bad-handshake", "Connection"},
		{"POST", "POST", "/echo", ws, 400, "bad-handshake", "GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged := len(e.logs.Lines("request refused"))
			status, hdr, body := rawRequest(t, ctx, e, tc.method, tc.path, tc.header)
			if status != tc.status {
				t.Errorf("status %d, want %d (body %q)", status, tc.status, body)
			}
			if got := hdr.Get("X-Wssproxy-Error"); got != tc.mark {
				t.Errorf("X-Wssproxy-Error %q, want %q", got, tc.mark)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body %q, want it to contain %q", body, tc.body)
			}
			if tc.mark == "" && hdr.Get("X-Reason") != "no token" {
				t.Errorf("backend's headers not relayed: %v", hdr)
			}
			if tc.mark != "" && strings.Contains(body, "127.0.0.1") {
				t.Errorf("body %q leaks a backend address", body)
			}
			if tc.mark != "" {
				lines := e.logs.Lines("request refused")[logged:]
				if len(lines) != 1 || !strings.Contains(lines[0], "refused="+tc.mark) || !strings.Contains(lines[0], "path="+tc.path) {
					t.Errorf("log lines for the refusal, want 1 naming %s and %s:\n%s", tc.mark, tc.path, strings.Join(lines, "\n"))
				}
			}
		})
	}
	if e.srv.OpenTunnels() != 0 {
		t.Errorf("open tunnels %d after refusals", e.srv.OpenTunnels())
	}
}

// rawRequest sends one HTTP/1.1 request over a fresh TLS connection and
// returns the response's status, headers and body.
func rawRequest(t testing.TB, ctx context.Context, e *env, method, path string, h http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url("https", path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	tr := &http.Transport{TLSClientConfig: e.tls, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, resp.Header, "" // the body is the tunnel
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestFailingBackendSparesOthers guards that a backend failing, at dial or
// mid-tunnel, leaves other tunnels on the same proxy working.
func TestFailingBackendSparesOthers(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	flaky := rawBackend(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		c.(*net.TCPConn).SetLinger(0) // reset, not close
	})
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/good", Backend: echoBackend(t, echo.Options{})},
		{Path: "/down", Backend: "ws://" + testutil.ClosedPort(t)},
		{Path: "/flaky", Backend: "ws://" + flaky},
	}})
	good := e.mustDial(ctx, "/good", nil)
	roundTrip(t, ctx, good, websocket.MessageText, []byte("before"))
	for range 20 {
		if _, _, err := e.dial(ctx, "/down", nil); err == nil {
			t.Fatal("dial /down succeeded")
		}
		if _, _, err := e.dial(ctx, "/flaky", nil); err == nil {
			t.Fatal("dial /flaky succeeded")
		}
	}
	roundTrip(t, ctx, good, websocket.MessageText, []byte("after"))
}

// TestPlainHTTP guards plain requests on a WebSocket route: proxied to the
// same backend with the same forwarding headers, streaming responses
// flushed as they come (long polling), and a static route.
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	release := make(chan struct{})
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/wss/health":
			w.Header().Set("X-Seen-Real-Ip", r.Header.Get("X-Real-Ip"))
			w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
			io.WriteString(w, "ok "+r.URL.RawQuery)
		case "/wss/poll":
			io.WriteString(w, "first;")
			w.(http.Flusher).Flush()
			select { // the rest only once the client has read the first part
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "second")
		}
	}))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<h1>site</h1>"), 0o644)
	os.Mkdir(filepath.Join(dir, "private"), 0o755)
	os.WriteFile(filepath.Join(dir, "private", "data.txt"), []byte("data"), 0o644)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/wss", Backend: "ws://" + backend},
		{Path: "/", Static: dir},
	}})
	get := func(path string, h http.Header) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url("https", path), nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/wss/health?v=1", http.Header{"X-Real-Ip": {"6.6.6.6"}})
	if body != "ok v=1" || resp.Header.Get("X-Seen-Real-Ip") != "127.0.0.1" || resp.Header.Get("X-Seen-Proto") != "https" {
		t.Errorf("health: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if _, body := get("/", nil); body != "<h1>site</h1>" {
		t.Errorf("static index: %q", body)
	}
	if resp, body := get("/private/data.txt", nil); resp.StatusCode != 200 || body != "data" {
		t.Errorf("static file: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("/private/", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("directory listing: %d, want 404", resp.StatusCode)
	}

	req, _ := http.NewRequestWithContext(ctx, "GET", e.url("https", "/wss/poll"), nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("streamed part not flushed: %v", err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(first)+string(rest) != "first;second" {
		t.Errorf("stream: %q%q", first, rest)
	}
}

// TestHTTP2Page guards that a client speaking HTTP/2 gets plain requests
// served over HTTP/2, while WebSockets (HTTP/1.1) work on the same port.
func TestHTTP2Page(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/", Backend: echoBackend(t, echo.Options{})}}})
	tr := &http.Transport{TLSClientConfig: e.tls.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url("https", "/"), nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Errorf("page: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	c := e.mustDial(ctx, "/wss", nil)
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
}

// TestHalfCloseAndEarlyBytes guards, at the byte level, what a WebSocket
// library would hide: frames that arrive with the handshake (before the
// hijack, and right after the backend's 101) are forwarded, every byte
// passes unchanged (masks included), and after the client's close frame and
// half-close (TLS close_notify + FIN) the backend's last frames still flow
// back.
func TestHalfCloseAndEarlyBytes(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	clientEarly := frame(true, 0, 0x1, []byte("client-early"), false)
	clientMore := cat(frame(true, 0, 0x1, []byte("more"), false), frame(true, 0, 0x8, []byte("\x03\xe8bye"), false))
	serverEarly := frame(true, 0, 0x1, []byte("server-early"), true) // unmasked: server to client
	serverLast := cat(frame(true, 0, 0x1, []byte("after-your-close"), true), frame(true, 0, 0x8, []byte("\x03\xe8"), true))
	backendGot := make(chan []byte, 1)
	backend := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		// 101 and the first server frame in one write.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"+string(serverEarly))
		all, _ := io.ReadAll(br) // until the client's half-close arrives
		backendGot <- all
		c.Write(serverLast)
		c.(*net.TCPConn).CloseWrite()
	})
	e := startProxy(t, route("/raw", "ws://"+backend))
	conn, err := (&tls.Dialer{Config: e.tls}).DialContext(ctx, "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Handshake and the first client frame in one write.
	io.WriteString(conn, "GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"+string(clientEarly))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	conn.Write(clientMore)
	if err := conn.(*tls.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.(*tls.Conn).NetConn().(*net.TCPConn).CloseWrite()
	if got, want := <-backendGot, append(clientEarly, clientMore...); !bytes.Equal(got, want) {
		t.Errorf("backend got %q, want %q", got, want)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if want := append(serverEarly, serverLast...); !bytes.Equal(rest, want) {
		t.Errorf("client got %q, want %q", rest, want)
	}
}
