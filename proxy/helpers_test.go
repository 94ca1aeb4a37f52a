package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

func TestMain(m *testing.M) {
	testutil.ExtendedConnect() // WebSockets over HTTP/2 (h2_test.go)
	goleak.VerifyTestMain(m)
}

// env is a running proxy on a real TLS listener on 127.0.0.1:0.
type env struct {
	t      testing.TB
	srv    *proxy.Server
	addr   string      // 127.0.0.1:port
	tls    *tls.Config // trusts the proxy's certificate
	client *http.Client
	logs   *testutil.Logs
}

// startProxy runs a proxy for cfg until the test ends; opts are applied
// to the Server before it serves.
func startProxy(t testing.TB, cfg proxy.Config, opts ...func(*proxy.Server)) *env {
	t.Helper()
	logs := &testutil.Logs{}
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(srv)
	}
	e := serveProxy(t, srv, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	e.logs = logs
	return e
}

// startProxyServer serves an already made Server (for tests that need
// their own logger) the way startProxy does, and closes it at the end.
func startProxyServer(t testing.TB, srv *proxy.Server) *env {
	t.Helper()
	return serveProxy(t, srv, srv.Close)
}

// serveProxy serves srv on a TLS listener until the test ends, then stops
// it with stop and checks that it holds nothing more.
// WSSPROXY_TEST_PARK=5ms makes its tunnels park after 5 to 10 ms of quiet
// (internal/sockio): .ci/run runs the tests so once.
func serveProxy(t testing.TB, srv *proxy.Server, stop func() error) *env {
	t.Helper()
	if d, err := time.ParseDuration(os.Getenv("WSSPROXY_TEST_PARK")); err == nil {
		proxy.SetParkAfter(srv, d)
	}
	cert, clientTLS := testutil.Cert(t)
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, Certificates: []tls.Certificate{*cert}}
	ln := testutil.Listen(t)
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, serverTLS) })
	tr := &http.Transport{TLSClientConfig: clientTLS}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		wg.Wait()
		// net/http's Close does not wait for its connections' goroutines
		// to finish closing: give them a bounded time.
		err := proxy.Leftovers(srv)
		for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); err = proxy.Leftovers(srv) {
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			t.Error(err)
		}
	})
	return &env{t: t, srv: srv, addr: ln.Addr().String(), tls: clientTLS, client: &http.Client{Transport: tr}, logs: &testutil.Logs{}}
}

// url is the wss:// (or https:// with scheme "https") URL of path.
func (e *env) url(scheme, path string) string { return scheme + "://" + e.addr + path }

// dial opens a WebSocket through the proxy. opts may be nil.
func (e *env) dial(ctx context.Context, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = e.client
	return websocket.Dial(ctx, e.url("wss", path), opts)
}

// mustDial is dial that fails the test on error and closes the conn at the
// end of the test.
func (e *env) mustDial(ctx context.Context, path string, opts *websocket.DialOptions) *websocket.Conn {
	e.t.Helper()
	c, _, err := e.dial(ctx, path, opts)
	if err != nil {
		e.t.Fatalf("dial %s: %v", path, err)
	}
	e.t.Cleanup(func() { c.CloseNow() })
	return c
}

// echoBackend runs the echo backend and returns its ws:// URL.
func echoBackend(t testing.TB, opts echo.Options) string {
	return "ws://" + testutil.Serve(t, echo.Handler(opts))
}

// route is a one-route config. It carries WebSockets over HTTP/2 too
// (http2_websockets = true, off by default), as many of these tests run a
// case over both.
func route(path, backend string) proxy.Config {
	return proxy.Config{Routes: []proxy.Route{{Path: path, Backend: backend}}, HTTP2WebSockets: &on}
}

var on = true

// roundTrip sends msg and expects it back.
func roundTrip(t testing.TB, ctx context.Context, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gotTyp != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %v %d bytes %.40q, want %v %d bytes %.40q", gotTyp, len(got), got, typ, len(msg), msg)
	}
}

// recorder is a backend that records each handshake request it gets and
// then echoes.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, r.Clone(context.Background()))
	rec.mu.Unlock()
	echo.Handler(echo.Options{}).ServeHTTP(w, r)
}

func (rec *recorder) last(t testing.TB) *http.Request {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("backend got no request")
	}
	return rec.reqs[len(rec.reqs)-1]
}

// rawBackend accepts one connection at a time and hands it to fn, for
// backends that misbehave in ways a real server library would not.
func rawBackend(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	ln := testutil.Listen(t)
	testutil.ServeConns(t, ln, fn)
	return ln.Addr().String()
}

// acceptRaw answers a WebSocket handshake on a raw backend connection by
// hand (the 101 with its Sec-WebSocket-Accept); false if no request came.
func acceptRaw(conn net.Conn) (*bufio.Reader, bool) {
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
	return br, true
}

// counter is the sum of the counters called name whose label has value.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// wsBackend is a WebSocket backend on 127.0.0.1: fn gets each accepted
// connection with its request, and the connection is closed when fn
// returns.
func wsBackend(t testing.TB, fn func(c *websocket.Conn, r *http.Request)) string {
	return testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		fn(c, r)
	}))
}
