package proxy_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// proxyClient is an HTTP client whose connections start with a PROXY
// header claiming the client is at src (version 0: no header).
func (e *env) proxyClient(version byte, src string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: e.tls,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil || version == 0 {
				return c, err
			}
			from, _ := net.ResolveTCPAddr("tcp", src)
			if _, err := proxyproto.HeaderProxyFromAddrs(version, from, c.RemoteAddr()).WriteTo(c); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}}
}

// TestProxyProtocolIn guards proxy_protocol: a PROXY v1 or v2 header from
// a peer in proxy_protocol_from sets the client address the backend sees
// (X-Real-IP, X-Forwarded-For); from any other peer a PROXY header is
// refused, and without one that peer is served as itself.
func TestProxyProtocolIn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	trusting := startProxy(t, proxy.Config{ProxyProtocol: true, ProxyProtocolFrom: []string{"127.0.0.0/8"},
		Routes: []proxy.Route{{Path: "/wss", Backend: backend}}})
	elsewhere := startProxy(t, proxy.Config{ProxyProtocol: true, ProxyProtocolFrom: []string{"10.0.0.0/8"},
		Routes: []proxy.Route{{Path: "/wss", Backend: backend}}})
	for _, tc := range []struct {
		name    string
		e       *env
		version byte
		src     string
		want    string // X-Real-IP at the backend; "" for refused
	}{
		{"v1 from a trusted balancer", trusting, 1, "203.0.113.7:5555", "203.0.113.7"},
		{"v2 from a trusted balancer", trusting, 2, "[2001:db8::7]:5555", "2001:db8::7"},
		{"v2 from an untrusted peer", elsewhere, 2, "203.0.113.7:5555", ""},
		{"v1 from an untrusted peer", elsewhere, 1, "203.0.113.7:5555", ""},
		{"no header from an untrusted peer", elsewhere, 0, "", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.e.proxyClient(tc.version, tc.src)
			defer client.CloseIdleConnections()
			c, _, err := websocket.Dial(ctx, tc.e.url("wss", "/wss"), &websocket.DialOptions{HTTPClient: client})
			if tc.want == "" {
				if err == nil {
					c.CloseNow()
					t.Fatal("a PROXY header from an untrusted peer was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
			r := rec.last(t)
			if got := r.Header.Get("X-Real-Ip"); got != tc.want || r.Header.Get("X-Forwarded-For") != tc.want {
				t.Errorf("backend saw X-Real-IP %q, X-Forwarded-For %q, want %q", got, r.Header.Get("X-Forwarded-For"), tc.want)
			}
		})
	}
	// A trusted balancer must send the header (the spec's rule).
	client := trusting.proxyClient(0, "")
	defer client.CloseIdleConnections()
	if c, _, err := websocket.Dial(ctx, trusting.url("wss", "/wss"), &websocket.DialOptions{HTTPClient: client}); err == nil {
		c.CloseNow()
		t.Error("a trusted balancer's connection without a PROXY header was accepted")
	}
}

// TestTrustedProxies guards trusted_proxies end to end: behind a trusted
// peer the client comes from X-Forwarded-For (walked past trusted hops),
// X-Forwarded-For is appended to, and Forwarded is set when asked for.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	rec := &recorder{}
	e := startProxy(t, proxy.Config{TrustedProxies: []string{"127.0.0.1", "10.0.0.0/8"},
		Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + testutil.Serve(t, rec), Forwarded: true}}})
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{Host: "chat.example.com",
		HTTPHeader: http.Header{"X-Forwarded-For": {"6.6.6.6, 2001:db8::7, 10.0.0.9"}, "Forwarded": {"for=6.6.6.6"}}})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
	h := rec.last(t).Header
	for name, want := range map[string]string{
		"X-Real-Ip":       "2001:db8::7",
		"X-Forwarded-For": "6.6.6.6, 2001:db8::7, 10.0.0.9, 127.0.0.1",
		"Forwarded":       `for="[2001:db8::7]";proto=https;host="chat.example.com"`,
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// TestProxyProtocolOut guards send_proxy_protocol: the backend connection
// starts with a PROXY header carrying the client's address, for WebSocket
// and plain requests alike.
func TestProxyProtocolOut(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 10*time.Second)
			got := make(chan string, 2)
			backend := rawBackend(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					got <- "no header: " + err.Error()
					return
				}
				got <- h.SourceAddr.(*net.TCPAddr).IP.String() + " v" + string('0'+rune(h.Version))
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.Header.Get("Upgrade") == "" {
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
					return
				}
				c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			})
			e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/", Backend: "ws://" + backend, SendProxyProtocol: version}}})
			want := "127.0.0.1 " + version
			if _, resp, _ := e.dial(ctx, "/wss", nil); resp == nil || resp.StatusCode != 403 {
				t.Fatalf("handshake: %v", resp)
			}
			if g := <-got; g != want {
				t.Errorf("WebSocket: backend read %q, want %q", g, want)
			}
			resp, err := e.client.Get(e.url("https", "/page"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if g := <-got; g != want {
				t.Errorf("plain HTTP: backend read %q, want %q", g, want)
			}
		})
	}
}
