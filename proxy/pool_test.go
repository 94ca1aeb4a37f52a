package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// tagged is a backend that says its name first, then echoes. Stop closes
// its listener, so new dials fail, while its open connections go on.
type tagged struct {
	name    string
	addr    string
	ln      net.Listener
	healthy atomic.Bool // what /health and the WebSocket handshake say
	hang    atomic.Bool // /health answers only when the request ends
}

func newTagged(t *testing.T, name string) *tagged {
	b := &tagged{name: name, ln: testutil.Listen(t)}
	b.addr = b.ln.Addr().String()
	b.healthy.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && b.hang.Load() {
			<-r.Context().Done()
			return
		}
		if !b.healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/health" {
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(name))
		echo.Serve(r.Context(), c)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(b.ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return b
}

func (b *tagged) stop() { b.ln.Close() }

// via dials /wss and returns the backend's name (and the open conn).
func (e *env) via(t *testing.T, ctx context.Context, h http.Header) (string, *websocket.Conn) {
	t.Helper()
	c, _, err := e.dial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_, name, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(name), c
}

func pool(b ...*tagged) []string {
	var out []string
	for _, x := range b {
		out = append(out, "ws://"+x.addr)
	}
	return out
}

// TestRoundRobin guards round_robin: handshakes spread by weight, exactly.
func TestRoundRobin(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a, b, c := newTagged(t, "a"), newTagged(t, "b"), newTagged(t, "c")
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss",
		Backends: []string{"ws://" + a.addr, "ws://" + b.addr, "ws://" + c.addr + " weight=2"}}}})
	counts := map[string]int{}
	for range 40 {
		name, conn := e.via(t, ctx, nil)
		conn.CloseNow()
		counts[name]++
	}
	if counts["a"] != 10 || counts["b"] != 10 || counts["c"] != 20 {
		t.Errorf("spread %v, want a:10 b:10 c:20", counts)
	}
}

// TestLeastConn guards least_conn: a new tunnel goes to the backend with
// the fewest open ones.
func TestLeastConn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a, b := newTagged(t, "a"), newTagged(t, "b")
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backends: pool(a, b), Balance: "least_conn"}}})
	var onA []*websocket.Conn
	for range 4 {
		name, c := e.via(t, ctx, nil)
		defer c.CloseNow()
		if name == "a" {
			onA = append(onA, c)
		}
	}
	if len(onA) != 2 {
		t.Fatalf("4 tunnels: %d on a, want 2", len(onA))
	}
	for _, c := range onA { // a now has none, b two
		c.Close(websocket.StatusNormalClosure, "")
	}
	waitTunnels(t, ctx, e, 2)
	for range 2 {
		name, c := e.via(t, ctx, nil)
		defer c.CloseNow()
		if name != "a" {
			t.Errorf("went to %s, want a (fewest tunnels)", name)
		}
	}
}

// TestIPHash guards ip_hash: a client stays on one backend, clients spread
// over all of them, and when one backend stops only its own clients move.
// Client addresses come from X-Forwarded-For through a trusted proxy.
func TestIPHash(t *testing.T) {
	t.Parallel()
	// 120 tunnels one after the other: a minute is for a machine running
	// two suites under the race detector.
	ctx := testutil.Context(t, time.Minute)
	bs := []*tagged{newTagged(t, "a"), newTagged(t, "b"), newTagged(t, "c"), newTagged(t, "d")}
	e := startProxy(t, proxy.Config{TrustedProxies: []string{"127.0.0.1"},
		Routes: []proxy.Route{{Path: "/wss", Backends: pool(bs...), Balance: "ip_hash"}}})
	const clients = 40
	from := func(i int) http.Header { return http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}} }
	first := make([]string, clients)
	per := map[string]int{}
	for i := range clients {
		for round := range 2 {
			name, c := e.via(t, ctx, from(i))
			c.CloseNow()
			if round == 0 {
				first[i] = name
				per[name]++
			} else if name != first[i] {
				t.Fatalf("client %d moved from %s to %s", i, first[i], name)
			}
		}
	}
	for _, b := range bs { // 10 each expected (17, 8, 3, 12 here); none or one is a broken hash
		if per[b.name] < 2 {
			t.Errorf("spread %v: %s has too few clients", per, b.name)
		}
	}
	bs[1].stop()
	for i := range clients {
		name, c := e.via(t, ctx, from(i))
		c.CloseNow()
		switch {
		case first[i] == "b" && name == "b":
			t.Fatalf("client %d still on the stopped backend", i)
		case first[i] != "b" && name != first[i]:
			t.Errorf("client %d of %s moved to %s", i, first[i], name)
		}
	}
}

// TestBackendDiesMidRun guards retries: with one backend stopped, every new
// handshake still succeeds (the next backend is tried), and tunnels on the
// other backend are untouched.
func TestBackendDiesMidRun(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a, b := newTagged(t, "a"), newTagged(t, "b")
	// fail_timeout an hour: b stays out for the whole test, however slow
	// the machine (at the default 10 s it came back, and was taken out again).
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backends: pool(a, b), FailTimeout: time.Hour}}})
	var onA []*websocket.Conn
	for range 6 {
		name, c := e.via(t, ctx, nil)
		defer c.CloseNow()
		if name == "a" {
			onA = append(onA, c)
		}
	}
	b.stop()
	for i := range 30 {
		if name, c := e.via(t, ctx, nil); name != "a" {
			t.Fatalf("handshake %d went to %s", i, name)
		} else {
			c.CloseNow()
		}
	}
	for i, c := range onA {
		roundTrip(t, ctx, c, websocket.MessageText, []byte(fmt.Sprint(i)))
	}
	if len(e.logs.Lines("backend out of rotation", b.addr)) != 1 {
		t.Errorf("log:\n%s", e.logs)
	}
}

// TestPassiveHealth guards max_fails/fail_timeout: a backend that refuses
// is taken out after max_fails failed dials and tried again after
// fail_timeout.
func TestPassiveHealth(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	a := newTagged(t, "a")
	sock := filepath.Join(t.TempDir(), "b.sock") // nothing listens there yet
	one := 1
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss",
		Backends: []string{"ws://" + a.addr, "ws+unix://" + sock}, MaxFails: &one, FailTimeout: time.Second}}})
	for range 4 {
		name, c := e.via(t, ctx, nil)
		c.CloseNow()
		if name != "a" {
			t.Fatalf("got %s", name)
		}
	}
	if n := len(e.logs.Lines("backend out of rotation", sock)); n != 1 {
		t.Fatalf("marked down %d times, want once:\n%s", n, e.logs)
	}
	// b comes up; after fail_timeout it gets traffic again.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	b := &tagged{name: "b", ln: ln, addr: sock}
	serveTagged(t, b)
	waitFor(t, ctx, "fail_timeout to pass", func() bool { return backendStatus(t, e.srv, "ws+unix://"+sock).Up })
	for {
		name, c := e.via(t, ctx, nil)
		c.CloseNow()
		if name == "b" {
			break
		}
	}
}

// serveTagged serves b on its listener.
func serveTagged(t *testing.T, b *tagged) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(b.name))
		echo.Serve(r.Context(), c)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(b.ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
}

// TestActiveHealth guards health checks, by HTTP GET of health_path and by
// WebSocket handshake: a failing backend is taken out after
// unhealthy_threshold checks, open tunnels to it stay, and it comes back
// after healthy_threshold passes.
func TestActiveHealth(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/health", ""} {
		t.Run("health_path="+path, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 20*time.Second)
			a, b := newTagged(t, "a"), newTagged(t, "b")
			e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backends: pool(a, b),
				HealthInterval: 10 * time.Millisecond, HealthPath: path, UnhealthyThreshold: 2, HealthyThreshold: 2}}})
			var tunnel *websocket.Conn
			for tunnel == nil {
				name, c := e.via(t, ctx, nil)
				if name == "b" {
					tunnel = c
					defer c.CloseNow()
				} else {
					c.CloseNow()
				}
			}
			b.healthy.Store(false)
			waitFor(t, ctx, "b out of rotation", func() bool { return !backendStatus(t, e.srv, "ws://"+b.addr).Up })
			e.logs.Wait(t, ctx, `backend unhealthy: out of rotation.*`+b.addr) // logged just after
			for range 6 {
				name, c := e.via(t, ctx, nil)
				c.CloseNow()
				if name != "a" {
					t.Fatalf("an unhealthy backend got a handshake")
				}
			}
			roundTrip(t, ctx, tunnel, websocket.MessageText, []byte("still here"))
			b.healthy.Store(true)
			waitFor(t, ctx, "b back in rotation", func() bool { return backendStatus(t, e.srv, "ws://"+b.addr).Up })
			e.logs.Wait(t, ctx, `backend healthy: back in rotation.*`+b.addr)
			for {
				name, c := e.via(t, ctx, nil)
				c.CloseNow()
				if name == "b" {
					break
				}
			}
		})
	}
}

// TestUnixAndWSSBackends guards the other kinds of backend: a unix socket
// (ws+unix:// and the socket key) and wss:// verified with backend_ca and
// backend_server_name. Each completes the seeds' exchange.
func TestUnixAndWSSBackends(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	sock := filepath.Join(t.TempDir(), "ws.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	srv := &http.Server{Handler: rec}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(uln) })
	defer func() { srv.Close(); wg.Wait() }()

	cert, _ := testutil.Cert(t, "backend.internal")
	certFile, _ := testutil.WriteKeyPair(t, cert)
	tln := tls.NewListener(testutil.Listen(t), &tls.Config{Certificates: []tls.Certificate{*cert}})
	tsrv := &http.Server{Handler: echo.Handler(echo.Options{})}
	wg.Go(func() { tsrv.Serve(tln) })
	defer tsrv.Close()
	wssAddr := tln.Addr().String()

	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/unix", Backend: "ws+unix://" + sock},
		{Path: "/sock", Backend: "ws://app.local/socket", Socket: sock},
		{Path: "/wss", Backend: "wss://" + wssAddr, BackendCA: certFile, BackendServerName: "backend.internal"},
		{Path: "/untrusted", Backend: "wss://" + wssAddr},
	}})
	for _, path := range []string{"/unix", "/sock", "/wss"} {
		c := e.mustDial(ctx, path, nil)
		roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
		c.Close(websocket.StatusNormalClosure, "")
	}
	if got := rec.last(t).URL.Path; got != "/socket" {
		t.Errorf("socket route: backend path %q, want /socket", got)
	}
	if _, resp, _ := e.dial(ctx, "/untrusted", nil); resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a backend the system roots do not trust: %v, want 502", resp)
	}
	resp, err := e.client.Get(e.url("https", "/unix/page"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("plain HTTP over the unix socket: %d", resp.StatusCode)
	}
}
