package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestH2Tunnel guards a WebSocket over HTTP/2 end to end: the seeds' tom
// exchange; the backend is sent an ordinary HTTP/1.1 handshake (GET,
// Upgrade, a fresh 16-byte key, version 13, the client's Origin and
// subprotocols, the proxy's forwarding headers, no :protocol); the
// backend's subprotocol comes back; the access line says HTTP/2.0 and 200;
// and the tunnel metrics count it as any other.
func TestH2Tunnel(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(context.Background()))
		rec.mu.Unlock()
		echo.Handler(echo.Options{Subprotocols: []string{"chat.v2"}}).ServeHTTP(w, r)
	}))
	logs := &testutil.Logs{}
	srv, err := proxy.New(route("/wss", "ws://"+backend), slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	e := startProxyServer(t, srv)
	c := e.h2(t).mustDial(t, ctx, "/wss?room=1", &websocket.DialOptions{
		Subprotocols: []string{"chat.v1", "chat.v2"},
		HTTPHeader:   http.Header{"Origin": {"https://chat.example"}, "X-Real-Ip": {"6.6.6.6"}},
	})
	if c.Subprotocol() != "chat.v2" {
		t.Errorf("subprotocol %q, want the backend's chat.v2", c.Subprotocol())
	}
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
	c.Close(websocket.StatusNormalClosure, "")
	waitTunnels(t, ctx, e, 0)

	r := rec.last(t)
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key"))
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"GET " + r.URL.RequestURI() + " " + r.Proto, r.Method == http.MethodGet && r.URL.RequestURI() == "/wss?room=1" && r.Proto == "HTTP/1.1"},
		{"Upgrade " + r.Header.Get("Upgrade"), r.Header.Get("Upgrade") == "websocket"},
		{"Connection " + r.Header.Get("Connection"), strings.EqualFold(r.Header.Get("Connection"), "upgrade")},
		{"Sec-WebSocket-Key " + r.Header.Get("Sec-Websocket-Key"), err == nil && len(key) == 16},
		{"Sec-WebSocket-Version " + r.Header.Get("Sec-Websocket-Version"), r.Header.Get("Sec-Websocket-Version") == "13"},
		{"Sec-WebSocket-Protocol " + r.Header.Get("Sec-Websocket-Protocol"), r.Header.Get("Sec-Websocket-Protocol") == "chat.v1,chat.v2"},
		{"Origin " + r.Header.Get("Origin"), r.Header.Get("Origin") == "https://chat.example"},
		{"X-Real-Ip " + r.Header.Get("X-Real-Ip"), r.Header.Get("X-Real-Ip") == "127.0.0.1"},
		{"X-Forwarded-Proto " + r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Proto") == "https"},
		{fmt.Sprintf(":protocol %q", r.Header[":protocol"]), r.Header[":protocol"] == nil},
		{"Host " + r.Host, r.Host == e.addr},
	} {
		if !check.ok {
			t.Errorf("backend's handshake: %s", check.what)
		}
	}
	var line map[string]any
	for _, l := range logs.Lines("tunnel closed") {
		json.Unmarshal([]byte(l), &line)
	}
	if line["proto"] != "HTTP/2.0" || line["status"] != 200.0 || line["close_code"] != 1000.0 || line["closed_by"] != "client" {
		t.Errorf("tunnel line: %v", line)
	}
	for _, m := range []struct {
		name, label, value string
		want               float64
	}{
		{"wssproxy_tunnels_ended_total", "reason", "client_close", 1},
		{"wssproxy_tunnel_bytes_total", "direction", "in", line["bytes_in"].(float64)},
		{"wssproxy_tunnel_bytes_total", "direction", "out", line["bytes_out"].(float64)},
	} {
		if got := counter(t, reg, m.name, m.label, m.value); got != m.want {
			t.Errorf("%s{%s=%q} = %v, want %v", m.name, m.label, m.value, got, m.want)
		}
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "wssproxy_handshake_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 1 {
				t.Errorf("handshake histogram count %d, want 1", n)
			}
		}
	}
}

// TestH2Messages guards messages over HTTP/2 both ways: 64 MiB, which is
// 256 times the stream's flow-control window, and every size around the
// frame header's length encodings.
func TestH2Messages(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 2*time.Minute)
	const most = 64 << 20
	e := startProxy(t, route("/wss", "ws://"+sizedEcho(t, most)))
	c := e.h2(t).mustDial(t, ctx, "/wss", nil)
	c.SetReadLimit(-1)
	big := make([]byte, most)
	rand.Read(big)
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 256 << 10, 1 << 20} {
		roundTrip(t, ctx, c, websocket.MessageBinary, big[:n])
	}
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatalf("write: %v", err)
	}
	expectMessage(t, ctx, c, websocket.MessageBinary, big)
	c.Close(websocket.StatusNormalClosure, "")
}

// sizedEcho is an echo backend for messages of up to most bytes: it
// answers each with one frame, as echo.Handler does, but reads it into a
// buffer made once rather than one grown as it comes. Under -race, growing
// a buffer to 64 MiB (copies, and the detector's shadow of every copy)
// costs more than the proxy's own work on the message.
func sizedEcho(t *testing.T, most int) string {
	return wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		c.SetReadLimit(int64(most) + 1)
		buf := make([]byte, most+1)
		for {
			typ, rd, err := c.Reader(r.Context())
			if err != nil {
				return
			}
			n, err := io.ReadFull(rd, buf)
			if err != io.ErrUnexpectedEOF && err != io.EOF { // over most bytes, or the end
				return
			}
			if c.Write(r.Context(), typ, buf[:n]) != nil {
				return
			}
		}
	})
}

// expectMessage reads the next message from c and fails the test unless
// it is want, of type typ. The payload is compared as it arrives, for the
// reason sizedEcho gives.
func expectMessage(t testing.TB, ctx context.Context, c *websocket.Conn, typ websocket.MessageType, want []byte) {
	t.Helper()
	gotTyp, rd, err := c.Reader(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gotTyp != typ {
		t.Fatalf("echo: got a %v message, want %v", gotTyp, typ)
	}
	buf := make([]byte, 64<<10)
	got := 0
	for {
		n, err := rd.Read(buf)
		if rest := want[got:]; n > len(rest) || !bytes.Equal(buf[:n], rest[:n]) {
			t.Fatalf("echo: the %d bytes after byte %d differ from the %d bytes sent", n, got, len(want))
		}
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if got != len(want) {
		t.Fatalf("echo: got %d bytes, want %d", got, len(want))
	}
}

// TestH2ManyStreams guards 50 WebSockets on one HTTP/2 connection, echoing
// at once, each getting only its own replies in order.
func TestH2ManyStreams(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})))
	h := e.h2(t)
	const n = 50
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = h.mustDial(t, ctx, "/wss", nil)
	}
	if got := e.srv.OpenTunnels(); got != n {
		t.Fatalf("open tunnels %d, want %d", got, n)
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for j := range 20 {
				msg := []byte(fmt.Sprintf("socket %d message %d", i, j))
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					errs <- err
					return
				}
				if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("socket %d: got %q, %v; want %q", i, got, err, msg)
					return
				}
			}
			errs <- c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	waitTunnels(t, ctx, e, 0)
}

// TestH2Closes guards how a tunnel over HTTP/2 ends, as over HTTP/1.1:
// close codes pass both ways; a backend that drops TCP gets the client
// 1014; a client's RST_STREAM gets the backend 1001; and either way the
// stream and the backend connection are gone.
func TestH2Closes(t *testing.T) {
	// Not parallel: every way a stream's tunnel ends, with the process-wide
	// CheckLeaks after it (the HTTP/2 counterpart of TestPeerVanishes).
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 20*time.Second)
	backendSaw := make(chan error, 1)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		switch r.URL.Path {
		case "/close": // closes with a code of its own
			c.Close(4002, "room closed")
		case "/drop": // one message, then drops TCP
			c.Read(r.Context())
		default: // reports how the client's end looked
			_, _, err := c.Read(r.Context())
			backendSaw <- err
		}
	})
	e := startProxy(t, route("/", "ws://"+backend))
	h := e.h2(t)
	t.Run("client's close code", func(t *testing.T) {
		c := h.mustDial(t, ctx, "/report", nil)
		c.Close(4001, "bye")
		if err := <-backendSaw; websocket.CloseStatus(err) != 4001 || closeReason(err) != "bye" {
			t.Errorf("backend got %v, want 4001 bye", err)
		}
	})
	t.Run("backend's close code", func(t *testing.T) {
		c := h.mustDial(t, ctx, "/close", nil)
		_, _, err := c.Read(ctx)
		if websocket.CloseStatus(err) != 4002 || closeReason(err) != "room closed" {
			t.Errorf("client got %v, want 4002 room closed", err)
		}
	})
	t.Run("backend drops TCP", func(t *testing.T) {
		c := h.mustDial(t, ctx, "/drop", nil)
		c.Write(ctx, websocket.MessageText, []byte("bye"))
		if code, reason := readClose(ctx, c); code != 1014 || reason != "backend went away" {
			t.Errorf("client got %d %q, want 1014", code, reason)
		}
	})
	t.Run("client resets the stream", func(t *testing.T) {
		raw := e.h2Raw(t, ctx)
		raw.connect(1, "/report")
		if r := raw.response(1); r.status != "200" {
			t.Fatalf("CONNECT: %v", r)
		}
		raw.fr.WriteRSTStream(1, http2.ErrCodeCancel)
		if err := <-backendSaw; websocket.CloseStatus(err) != websocket.StatusGoingAway || closeReason(err) != "client went away" {
			t.Errorf("backend got %v, want 1001 client went away", err)
		}
	})
	waitTunnels(t, ctx, e, 0)
}

// TestH2FlowControl guards that one stuck stream does not stop the others
// on its connection, in either direction, and that the proxy holds only a
// bounded amount for it:
//   - its client stops reading: the proxy stops reading its backend, whose
//     writes then block (the proxy took less than 32 MiB of a 256 MiB
//     flood), while another stream echoes 8 MiB;
//   - its backend stops reading: its client's writes block within the
//     stream's window, while another stream echoes 8 MiB (more than Go's
//     default 1 MiB connection window, which a stuck stream would hold).
func TestH2FlowControl(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	var flooded atomic.Int64
	floodDone := make(chan error, 1)
	release := make(chan struct{})
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		switch r.URL.Path {
		case "/flood": // writes until a write waits 500 ms
			msg := make([]byte, 64<<10)
			for flooded.Load() < 256<<20 {
				wctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
				err := c.Write(wctx, websocket.MessageBinary, msg)
				cancel()
				if err != nil {
					floodDone <- err
					return
				}
				flooded.Add(int64(len(msg)))
			}
			floodDone <- nil
		case "/sink": // reads nothing until the test ends
			<-release
		default:
			c.SetReadLimit(-1)
			echo.Serve(r.Context(), c)
		}
	})
	cfg := route("/", "ws://"+backend)
	cfg.Routes[0].SendTimeout = time.Hour // stuck is what is tested, not dropped
	e := startProxy(t, cfg)
	defer close(release)
	h := e.h2(t)
	echo8MiB := func(t *testing.T) {
		c := h.mustDial(t, ctx, "/echo", nil)
		c.SetReadLimit(-1)
		msg := make([]byte, 1<<20)
		for range 8 {
			roundTrip(t, ctx, c, websocket.MessageBinary, msg)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}

	t.Run("client stops reading", func(t *testing.T) {
		h.mustDial(t, ctx, "/flood", nil) // never read
		select {
		case err := <-floodDone:
			if err == nil {
				t.Fatalf("the backend wrote 256 MiB to a client that reads nothing: the proxy buffers without bound")
			}
		case <-ctx.Done():
			t.Fatal("the flood never blocked")
		}
		if n := flooded.Load(); n > 32<<20 {
			t.Errorf("the proxy took %d MiB from the backend of a client that reads nothing", n>>20)
		}
		echo8MiB(t)
	})
	t.Run("backend stops reading", func(t *testing.T) {
		c := h.mustDial(t, ctx, "/sink", nil)
		var sent atomic.Int64
		blocked := make(chan struct{})
		writer := make(chan error, 1)
		go func() {
			msg := make([]byte, 64<<10)
			for {
				done := make(chan error, 1)
				go func() { done <- c.Write(ctx, websocket.MessageBinary, msg) }()
				select {
				case err := <-done:
					if err != nil {
						writer <- err
						return
					}
					sent.Add(int64(len(msg)))
					continue
				case <-time.After(500 * time.Millisecond):
				}
				close(blocked) // a write has waited 500 ms: the stream is stuck
				writer <- <-done
				return
			}
		}()
		select {
		case <-blocked:
		case err := <-writer:
			t.Fatalf("writing to a backend that reads nothing: %v after %d bytes", err, sent.Load())
		case <-ctx.Done():
			t.Fatal("writes to a backend that reads nothing never blocked")
		}
		echo8MiB(t)
		c.CloseNow()
		<-writer
	})
}

// TestH2SendTimeout guards send_timeout over HTTP/2: a client whose stream
// takes nothing for send_timeout is dropped (its stream reset) and the
// backend told 1001, while another stream on the connection goes on; and
// a tunnel merely idle for longer than send_timeout is not touched (Go's
// own stream write deadline would reset it).
func TestH2SendTimeout(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	backendSaw := make(chan error, 1)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		if r.URL.Path != "/flood" {
			echo.Serve(r.Context(), c)
			return
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			msg := make([]byte, 64<<10)
			for c.Write(r.Context(), websocket.MessageBinary, msg) == nil {
			}
		})
		_, _, err := c.Read(r.Context()) // the proxy's close frame
		backendSaw <- err
		c.CloseNow()
	})
	cfg := route("/", "ws://"+backend)
	cfg.Routes[0].SendTimeout = 300 * time.Millisecond
	logs := &testutil.Logs{}
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := startProxyServer(t, srv)
	h := e.h2(t)
	idle := h.mustDial(t, ctx, "/echo", nil)
	roundTrip(t, ctx, idle, websocket.MessageText, []byte("before"))

	h.mustDial(t, ctx, "/flood", nil) // never read
	select {
	case err := <-backendSaw:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "client not reading" {
			t.Errorf("flood's backend got %v, want 1001 client not reading", err)
		}
	case <-ctx.Done():
		t.Fatal("a client that reads nothing was never dropped")
	}
	waitTunnels(t, ctx, e, 1) // the flood's has ended, and was logged first
	if n := len(logs.Lines("tunnel closed", `reason="client not reading"`)); n != 1 {
		t.Errorf("%d tunnel lines saying \"client not reading\", want 1:\n%s", n, logs)
	}
	// The idle tunnel has been idle for longer than send_timeout by now.
	roundTrip(t, ctx, idle, websocket.MessageText, []byte("after"))
	idle.Close(websocket.StatusNormalClosure, "")
}

// TestH2Shutdown guards shutdown with tunnels over HTTP/2: every stream's
// client and backend get 1001, the connection gets GOAWAY (no new streams),
// and once the close handshakes are done Shutdown returns. (The close
// frames are spread over 100 ms, not the default 10 s.)
func TestH2Shutdown(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	backendSaw := make(chan error, 2)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		_, _, err := c.Read(r.Context())
		backendSaw <- err
	})
	cfg := route("/wss", "ws://"+backend)
	cfg.CloseSpread = dur(100 * time.Millisecond)
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startProxyServer(t, srv)
	h := e.h2(t)
	clients := []*websocket.Conn{h.mustDial(t, ctx, "/wss", nil), h.mustDial(t, ctx, "/wss", nil)}
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	for i, c := range clients {
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("client %d got %v, want 1001", i, err)
		}
	}
	for range clients {
		if err := <-backendSaw; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("backend got %v, want 1001", err)
		}
	}
	waitFor(t, ctx, "GOAWAY", func() bool { return h.closing() })
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestH2Reload guards that a reload leaves a tunnel over HTTP/2, and the
// connection carrying it, alone, while new streams get the new
// configuration; and that a reload turning http2_websockets off warns that
// it applies at the next start (Go 1.27 cannot stop advertising extended
// CONNECT), new streams still being served rather than refused.
func TestH2Reload(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	backend := echoBackend(t, echo.Options{})
	e := startProxy(t, route("/wss", backend))
	h := e.h2(t)
	c := h.mustDial(t, ctx, "/wss", nil)
	roundTrip(t, ctx, c, websocket.MessageText, []byte("before"))
	if err := e.srv.Reload(route("/other", backend)); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ctx, c, websocket.MessageText, []byte("after"))
	if _, resp, err := h.dial(ctx, "/wss", nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("a new stream for the removed route: %v %v, want 404", resp, err)
	}
	h.mustDial(t, ctx, "/other", nil)
	if h.closing() {
		t.Error("the connection is closing after a reload")
	}
	off := false
	cfg := route("/other", backend)
	cfg.HTTP2WebSockets = &off
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	e.logs.Wait(t, ctx, `level=WARN msg="http2_websockets changes apply at the next start"`)
	h.mustDial(t, ctx, "/other", nil)
	c.Close(websocket.StatusNormalClosure, "")
}

// TestH2DeadConnection guards a client that stops reading its HTTP/2
// connection altogether (its TCP window full, so not even RST_STREAM can
// reach it): after send_timeout the connection is closed, and the
// tunnel's backend is told 1001 "client not reading", as over HTTP/1.1.
func TestH2DeadConnection(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	backendSaw := make(chan error, 1)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			msg := make([]byte, 64<<10)
			for c.Write(r.Context(), websocket.MessageBinary, msg) == nil {
			}
		})
		_, _, err := c.Read(r.Context())
		backendSaw <- err
		c.CloseNow()
	})
	cfg := route("/", "ws://"+backend)
	cfg.Routes[0].SendTimeout = 300 * time.Millisecond
	e := startProxy(t, cfg)
	raw := e.h2Raw(t, ctx)
	// Windows wide open, then never another read: only TCP holds the
	// proxy back.
	raw.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	raw.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	raw.connect(1, "/flood")
	if r := raw.response(1); r.status != "200" {
		t.Fatalf("CONNECT: %v", r)
	}
	select {
	case err := <-backendSaw:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "client not reading" {
			t.Errorf("backend got %v, want 1001 client not reading", err)
		}
	case <-ctx.Done():
		t.Fatal("a client connection that takes nothing was never cut off")
	}
	waitTunnels(t, ctx, e, 0)
}
