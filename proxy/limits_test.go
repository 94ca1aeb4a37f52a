package proxy_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// countingBackend is an echo backend that counts the connections it
// accepts: a refused handshake must not reach it.
func countingBackend(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	ln := testutil.Listen(t)
	counted := &countListener{Listener: ln, n: &n}
	srv := &http.Server{Handler: echo.Handler(echo.Options{})}
	done := make(chan struct{})
	go func() { srv.Serve(counted); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "ws://" + ln.Addr().String(), &n
}

type countListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestLimits guards max_connections, max_connections_per_ip and the
// handshake rate: over a limit the client gets 503 (429 for the rate)
// before any backend is dialed, with one log line naming the limit.
func TestLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    proxy.Config
		admit  int
		status int
		kind   string
	}{
		{"max_connections", proxy.Config{MaxConnections: 3}, 3, 503, "limit-connections"},
		{"max_connections_per_ip", proxy.Config{MaxConnectionsPerIP: 2}, 2, 503, "limit-connections-per-ip"},
		{"handshake_rate_per_ip", proxy.Config{HandshakeRatePerIP: 0.001, HandshakeBurstPerIP: 4}, 4, 429, "limit-rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 10*time.Second)
			backend, dialed := countingBackend(t)
			cfg := tc.cfg
			cfg.Routes = []proxy.Route{{Path: "/wss", Backend: backend}}
			e := startProxy(t, cfg)
			for i := range tc.admit {
				c := e.mustDial(ctx, "/wss", nil)
				roundTrip(t, ctx, c, websocket.MessageText, []byte{byte(i)})
			}
			_, resp, err := e.dial(ctx, "/wss", nil)
			if err == nil || resp == nil || resp.StatusCode != tc.status || resp.Header.Get("X-Wssproxy-Error") != tc.kind {
				t.Fatalf("over the limit: %v, %v", err, resp)
			}
			if got := dialed.Load(); got != int64(tc.admit) {
				t.Errorf("backend saw %d connections, want %d", got, tc.admit)
			}
			if len(e.logs.Lines("request refused", "refused="+tc.kind)) != 1 {
				t.Errorf("log:\n%s", e.logs)
			}
		})
	}
}

// TestConnectionLimitFrees guards that a closed connection gives its place
// back, so a limit never leaks.
func TestConnectionLimitFrees(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, proxy.Config{MaxConnectionsPerIP: 1, Routes: []proxy.Route{{Path: "/wss", Backend: echoBackend(t, echo.Options{})}}})
	for i := range 5 {
		c := e.mustDial(ctx, "/wss", nil)
		roundTrip(t, ctx, c, websocket.MessageText, []byte{byte(i)})
		c.Close(websocket.StatusNormalClosure, "")
		waitTunnels(t, ctx, e, 0)
	}
	// A refused or failed handshake gives its place back too.
	down := startProxy(t, proxy.Config{MaxConnections: 1, Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + testutil.ClosedPort(t)}}})
	for range 3 {
		if _, resp, _ := down.dial(ctx, "/wss", nil); resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("want 502 each time, got %v", resp)
		}
	}
}

// TestOrigin guards allowed_origins and require_origin: a handshake from
// another Origin gets 403 and never reaches the backend.
func TestOrigin(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	backend, dialed := countingBackend(t)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/open", Backend: backend, AllowedOrigins: []string{"https://example.com", "https://*.example.com", "http://localhost:3000"}},
		{Path: "/strict", Backend: backend, AllowedOrigins: []string{"https://example.com"}, RequireOrigin: true},
	}})
	for _, tc := range []struct {
		path, origin string
		ok           bool
	}{
		{"/open", "https://example.com", true},
		{"/open", "https://EXAMPLE.com:443", true},
		{"/open", "https://chat.example.com", true},
		{"/open", "https://a.b.example.com", true},
		{"/open", "http://localhost:3000", true},
		{"/open", "", true}, // a non-browser client
		{"/open", "https://evil.com", false},
		{"/open", "https://example.com.evil.com", false},
		{"/open", "https://notexample.com", false},
		{"/open", "http://example.com", false},
		{"/open", "https://example.com:8443", false},
		{"/open", "http://localhost:3001", false},
		{"/open", "null", false},
		{"/strict", "https://example.com", true},
		{"/strict", "", false},
	} {
		before := dialed.Load()
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, resp, err := e.dial(ctx, tc.path, &websocket.DialOptions{HTTPHeader: h})
		if tc.ok {
			if err != nil {
				t.Errorf("%s from %q: %v", tc.path, tc.origin, err)
				continue
			}
			c.CloseNow()
			continue
		}
		if err == nil {
			c.CloseNow()
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Wssproxy-Error") != "origin" {
			t.Errorf("%s from %q: %v %v, want 403", tc.path, tc.origin, err, resp)
		}
		if dialed.Load() != before {
			t.Errorf("%s from %q reached the backend", tc.path, tc.origin)
		}
	}
}

// TestReload guards Server.Reload: new routes and limits apply to new
// connections at once, open tunnels keep running on what they started
// with, and an invalid configuration changes nothing.
func TestReload(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a := echoBackend(t, echo.Options{})
	e := startProxy(t, route("/wss", a))
	var open []*websocket.Conn
	for range 50 {
		open = append(open, e.mustDial(ctx, "/wss", nil))
	}
	// New connections keep arriving while the configuration changes.
	stop := make(chan struct{})
	failures := make(chan error, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, _, err := e.dial(ctx, "/wss", nil)
			if err != nil {
				failures <- err
				continue
			}
			c.CloseNow()
		}
	}()
	b := echoBackend(t, echo.Options{})
	for i := range 5 {
		if err := e.srv.Reload(proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: a}, {Path: "/new", Backend: b}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload(proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "htp://x"}}}); err == nil {
			t.Fatalf("reload %d: an invalid config was accepted", i)
		}
	}
	close(stop)
	<-done
	close(failures)
	for err := range failures {
		t.Errorf("a handshake during reloads failed: %v", err)
	}
	c := e.mustDial(ctx, "/new", nil) // the new route, and the invalid config did not replace it
	roundTrip(t, ctx, c, websocket.MessageText, []byte("new"))
	for i, c := range open {
		roundTrip(t, ctx, c, websocket.MessageText, []byte(strings.Repeat("x", i)))
	}
	if err := e.srv.Reload(proxy.Config{MaxConnections: 1, Routes: []proxy.Route{{Path: "/wss", Backend: a}}}); err != nil {
		t.Fatal(err)
	}
	if _, resp, _ := e.dial(ctx, "/wss", nil); resp == nil || resp.StatusCode != 503 {
		t.Errorf("a reloaded limit does not apply: %v", resp)
	}
}

// TestSlowClientsCutOff guards the handshake timeouts against slow
// clients: a connection that never starts TLS, and one that stops halfway
// through its request headers, are closed by the proxy. (read_header_timeout
// counts from the accept: it is long enough for the second client's TLS
// handshake and first bytes on a loaded machine.)
func TestSlowClientsCutOff(t *testing.T) {
	t.Parallel()
	e := startProxy(t, proxy.Config{ReadHeaderTimeout: time.Second,
		Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + testutil.ClosedPort(t)}}})
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"no TLS handshake", func() (net.Conn, error) { return net.Dial("tcp", e.addr) }},
		{"headers never finished", func() (net.Conn, error) {
			c, err := tls.Dial("tcp", e.addr, e.tls)
			if err == nil {
				_, err = io.WriteString(c, "GET /wss HTTP/1.1\r\nHost: x\r\nUpgrade: web")
			}
			return c, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the proxy kept a slow client")
			}
		})
	}
}
