package admin_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// rig is a proxy on a real TLS listener, routes /a and /b to an echo
// backend that reports how each of its connections was closed, and the
// admin endpoints on a listener of their own.
type rig struct {
	t      testing.TB
	srv    *proxy.Server
	addr   string // the proxy's TLS listener
	admin  string // the admin listener
	tls    *tls.Config
	logs   *testutil.Logs
	log    *slog.Logger
	closes chan websocket.StatusCode // the backend's view of each close
}

func newRig(t testing.TB, routes ...proxy.Route) *rig {
	t.Helper()
	r := &rig{t: t, logs: &testutil.Logs{}, closes: make(chan websocket.StatusCode, 2048)}
	backend := testutil.Serve(t, http.HandlerFunc(r.echo))
	if len(routes) == 0 {
		routes = []proxy.Route{{Path: "/a"}, {Path: "/b"}}
	}
	for i := range routes {
		routes[i].Backend = "ws://" + backend
	}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.log = log
	srv, err := proxy.New(proxy.Config{Routes: routes}, log)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	cert, clientTLS := testutil.Cert(t)
	r.tls = clientTLS
	ln := testutil.Listen(t)
	r.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		srv.ServeTLS(ln, &tls.Config{NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{*cert}})
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
	})
	r.admin = testutil.Serve(t, admin.Handler(admin.Options{Listen: "127.0.0.1:0", Server: srv,
		Listening:    func() *health.Listening { return nil },
		Certificates: func() []tlsconf.Info { return nil }, Started: time.Now(), Log: log,
		Metrics: http.NotFoundHandler()}))
	return r
}

// echo is the backend: it echoes messages and reports the close it got.
func (r *rig) echo(w http.ResponseWriter, req *http.Request) {
	c, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			r.closes <- websocket.CloseStatus(err)
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// dial opens a WebSocket on path through the proxy and returns it with its
// local port (what the tunnel API reports as client_port).
func (r *rig) dial(ctx context.Context, path string) (*websocket.Conn, int) {
	r.t.Helper()
	var local net.Addr
	tr := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: r.tls.Clone()}
		d.Config.NextProtos = []string{"http/1.1"}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			local = c.LocalAddr()
		}
		return c, err
	}}
	c, _, err := websocket.Dial(ctx, "wss://"+r.addr+path, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		r.t.Fatalf("dial %s: %v", path, err)
	}
	r.t.Cleanup(func() { c.CloseNow() })
	port := local.(*net.TCPAddr).Port
	// The proxy writes the 101 before it enters the tunnel in its table:
	// wait until the tunnel API lists it, so a test that looks next sees it.
	for !r.listed(port) {
		select {
		case <-ctx.Done():
			r.t.Fatalf("dial %s: the tunnel from port %d is not listed", path, port)
		case <-time.After(time.Millisecond):
		}
	}
	return c, port
}

// listed reports whether the proxy lists a tunnel from the client port.
func (r *rig) listed(port int) bool {
	for _, t := range r.srv.Tunnels() {
		if t.ClientPort == port {
			return true
		}
	}
	return false
}

// roundTrip sends msg on c and reads it back.
func roundTrip(t testing.TB, ctx context.Context, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// closeCode is the close code c is sent, read within ctx.
func closeCode(ctx context.Context, c *websocket.Conn) (websocket.StatusCode, string, error) {
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason, nil
	}
	return -1, "", err
}

// withHistory gives the rig's admin endpoints metrics and a History, as
// wssproxy's are; it must be called before any tunnel opens.
func (r *rig) withHistory() *admin.History {
	r.t.Helper()
	reg := prometheus.NewRegistry()
	if err := r.srv.RegisterMetrics(reg); err != nil {
		r.t.Fatal(err)
	}
	h := admin.NewHistory(r.srv, reg, 0) // sampled by the test
	r.t.Cleanup(h.Stop)
	r.admin = testutil.Serve(r.t, admin.Handler(admin.Options{Listen: "127.0.0.1:0", Server: r.srv,
		Listening:    func() *health.Listening { return nil },
		Certificates: func() []tlsconf.Info { return nil }, Started: time.Now(), History: h, Log: r.log,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}))
	return h
}

// backendClose is the close code the backend saw on its next connection
// to end, read within ctx.
func (r *rig) backendClose(ctx context.Context) websocket.StatusCode {
	r.t.Helper()
	select {
	case code := <-r.closes:
		return code
	case <-ctx.Done():
		r.t.Fatal("no backend connection ended")
	}
	return 0
}
