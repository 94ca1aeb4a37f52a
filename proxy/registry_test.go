package proxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// backendStatus is what Status says of the backend named name.
func backendStatus(t *testing.T, srv *proxy.Server, name string) proxy.BackendStatus {
	t.Helper()
	for _, rs := range srv.Status() {
		for _, b := range rs.Backends {
			if b.Name == name {
				return b
			}
		}
	}
	t.Fatalf("no backend %s in the status", name)
	return proxy.BackendStatus{}
}

// TestLeastConnAfterReload guards least_conn across a reload: the new
// configuration counts the tunnels opened under the old one, so new
// tunnels go to the backend that has none rather than to the one that
// holds them all.
func TestLeastConnAfterReload(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a, b := newTagged(t, "a"), newTagged(t, "b")
	cfg := proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backends: pool(a, b), Balance: "least_conn"}}}
	e := startProxy(t, cfg)
	var onB []*websocket.Conn
	for range 4 { // a, b, a, b
		name, c := e.via(t, ctx, nil)
		defer c.CloseNow()
		if name == "b" {
			onB = append(onB, c)
		}
	}
	if len(onB) != 2 {
		t.Fatalf("%d of 4 tunnels on b, want 2", len(onB))
	}
	for _, c := range onB {
		c.Close(websocket.StatusNormalClosure, "")
	}
	waitTunnels(t, ctx, e, 2) // both on a
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		name, c := e.via(t, ctx, nil)
		defer c.CloseNow()
		if name != "b" {
			t.Errorf("tunnel %d after the reload went to %s, want b (a holds 2)", i, name)
		}
	}
	if got := backendStatus(t, e.srv, "ws://"+a.addr).Conns; got != 2 {
		t.Errorf("a's open connections after the reload: %d, want 2", got)
	}
}

// TestHealthSurvivesReload guards health across a reload: a backend out of
// rotation, by failed dials (max_fails) or by active checks, is still out
// after a reload that names it again, and gets no handshake.
func TestHealthSurvivesReload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		active bool
	}{
		{"passive", false},
		{"active", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 20*time.Second)
			a := newTagged(t, "a")
			one := 1
			r := proxy.Route{Path: "/wss", MaxFails: &one, FailTimeout: time.Minute}
			var down string // the backend taken out
			var b *tagged
			if tc.active {
				b = newTagged(t, "b")
				r.Backends = pool(a, b)
				r.HealthInterval, r.HealthPath, r.HealthTimeout = 10*time.Millisecond, "/health", time.Minute
				r.UnhealthyThreshold, r.HealthyThreshold = 1, 1
				down = "ws://" + b.addr
			} else {
				down = "ws+unix://" + filepath.Join(t.TempDir(), "b.sock") // nothing listens
				r.Backends = []string{"ws://" + a.addr, down}
			}
			cfg := proxy.Config{Routes: []proxy.Route{r}}
			e := startProxy(t, cfg)
			if tc.active {
				b.healthy.Store(false)
				waitFor(t, ctx, "b out of rotation", func() bool { return !backendStatus(t, e.srv, down).Up })
				e.logs.Wait(t, ctx, `backend unhealthy: out of rotation.*`+b.addr) // logged just after
				// From now on no check of b ends before the test does: a
				// reload that forgot the result would show b up.
				b.hang.Store(true)
			} else {
				for backendStatus(t, e.srv, down).Up {
					_, c := e.via(t, ctx, nil)
					c.CloseNow()
				}
			}
			if err := e.srv.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			if backendStatus(t, e.srv, down).Up {
				t.Errorf("%s is back in rotation after the reload", down)
			}
			for range 4 {
				name, c := e.via(t, ctx, nil)
				c.CloseNow()
				if name != "a" {
					t.Fatalf("a handshake went to %s", name)
				}
			}
			if n := len(e.logs.Lines("backend out of rotation", down)); !tc.active && n != 1 {
				t.Errorf("%s taken out %d times, want once (it was never back):\n%s", down, n, e.logs)
			}
		})
	}
}

// TestStatusAfterReload guards the status page's counts across a reload:
// a route's open tunnels include those opened before the reload, so they
// add up to the wssproxy_tunnels_open metric and OpenTunnels.
func TestStatusAfterReload(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	cfg := route("/wss", echoBackend(t, echo.Options{}))
	e := startProxy(t, cfg)
	for range 3 {
		e.mustDial(ctx, "/wss", nil)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e.mustDial(ctx, "/wss", nil)
	}
	waitTunnels(t, ctx, e, 5)
	// A tunnel counts on its route once its goroutine runs, just after
	// the server counts it.
	for e.srv.Status()[0].Open != 5 {
		select {
		case <-ctx.Done():
			t.Fatalf("status: %d tunnels open on route[1], want 5", e.srv.Status()[0].Open)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// connCounter is a plain-HTTP backend that counts the connections made to
// it and those closed.
type connCounter struct {
	addr           string
	opened, closed atomic.Int64
}

func newConnCounter(t *testing.T) *connCounter {
	c := &connCounter{}
	ln := testutil.Listen(t)
	c.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				c.opened.Add(1)
			case http.StateClosed:
				c.closed.Add(1)
			}
		},
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return c
}

// TestReloadKeepsBackendConnections guards the plain-HTTP connection pools
// across reloads: 50 reloads naming the same backend reuse its one idle
// connection (each used to keep a pool, and its idle connections for 90
// s, of its own), and a reload that drops the backend closes it.
func TestReloadKeepsBackendConnections(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	back := newConnCounter(t)
	cfg := proxy.Config{Routes: []proxy.Route{{Path: "/", Backend: "http://" + back.addr}}}
	e := startProxy(t, cfg)
	get := func() {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", "/page"), nil)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
	}
	for range 50 {
		get()
		if err := e.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	get()
	if n := back.opened.Load(); n != 1 {
		t.Errorf("connections to the backend over 50 reloads: %d, want 1", n)
	}
	other := newConnCounter(t)
	if err := e.srv.Reload(proxy.Config{Routes: []proxy.Route{{Path: "/", Backend: "http://" + other.addr}}}); err != nil {
		t.Fatal(err)
	}
	get()
	for back.closed.Load() != back.opened.Load() {
		select {
		case <-ctx.Done():
			t.Fatalf("the dropped backend's idle connection is still open (%d opened, %d closed)", back.opened.Load(), back.closed.Load())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestReloadAfterClose guards that a closed Server refuses a Reload
// (ErrShuttingDown) and starts nothing, rather than health checks that
// no one waits for.
func TestReloadAfterClose(t *testing.T) {
	// Not parallel: the health checker it guards against would be a
	// goroutine of no server's, which only the process-wide CheckLeaks
	// names.
	testutil.CheckLeaks(t)
	cfg := proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + testutil.ClosedPort(t), HealthInterval: time.Hour}}}
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := srv.Reload(cfg); !errors.Is(err, proxy.ErrShuttingDown) {
		t.Errorf("Reload after Close: %v, want ErrShuttingDown", err)
	}
}
