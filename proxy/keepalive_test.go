package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

func dur(d time.Duration) *time.Duration { return &d }

// closeRecorder is an echo backend that reports the close status it got
// (or -1 for a connection that ended without one) and counts the pongs it
// received.
type closeRecorder struct {
	closes chan websocket.StatusCode
	pongs  atomic.Int64
}

func newCloseRecorder(n int) *closeRecorder {
	return &closeRecorder{closes: make(chan websocket.StatusCode, n)}
}

func (cr *closeRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OnPongReceived: func(context.Context, []byte) { cr.pongs.Add(1) },
	})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			cr.closes <- websocket.CloseStatus(err)
			return
		}
		c.Write(r.Context(), typ, msg)
	}
}

// wantClose waits for a close status from the recorder.
func (cr *closeRecorder) wantClose(t *testing.T, ctx context.Context, want websocket.StatusCode) {
	t.Helper()
	select {
	case got := <-cr.closes:
		if got != want {
			t.Errorf("backend got close %d, want %d", got, want)
		}
	case <-ctx.Done():
		t.Fatalf("backend got no close, want %d", want)
	}
}

// readClose reads until c ends and returns its close status and reason.
func readClose(ctx context.Context, c *websocket.Conn) (websocket.StatusCode, string) {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			var ce websocket.CloseError
			errors.As(err, &ce)
			return websocket.CloseStatus(err), ce.Reason
		}
	}
}

// closeWatch reads, each in its own goroutine, the close that every one of
// n clients on /wss gets.
type closeWatch struct {
	n     int
	wg    sync.WaitGroup
	codes chan websocket.StatusCode
}

// watchCloses dials n clients through e and starts reading their closes.
func watchCloses(ctx context.Context, e *env, n int) *closeWatch {
	w := &closeWatch{n: n, codes: make(chan websocket.StatusCode, n)}
	for range n {
		c := e.mustDial(ctx, "/wss", nil)
		w.wg.Go(func() { code, _ := readClose(ctx, c); w.codes <- code })
	}
	return w
}

// want waits for every client's close and fails unless each got code, and
// the backends (recorded by cr) too.
func (w *closeWatch) want(t *testing.T, ctx context.Context, cr *closeRecorder, code websocket.StatusCode) {
	t.Helper()
	w.wg.Wait()
	close(w.codes)
	for got := range w.codes {
		if got != code {
			t.Fatalf("a client got %d, want %d", got, code)
		}
	}
	for range w.n {
		cr.wantClose(t, ctx, code)
	}
}

// TestDeadClientDetected guards keepalive: a client that stops answering
// (TCP open, nothing read) is pinged, found dead after ping_timeout, and its
// tunnel closed on both sides: the backend gets 1001, both fds are freed.
func TestDeadClientDetected(t *testing.T) {
	// Not parallel: "both fds are freed" is the process's fd count, which
	// only CheckLeaks sees.
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	cr := newCloseRecorder(1)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + testutil.Serve(t, cr),
		PingInterval: dur(50 * time.Millisecond), PingTimeout: 50 * time.Millisecond,
	}}})
	e.mustDial(ctx, "/wss", nil) // never reads: pings go unanswered
	cr.wantClose(t, ctx, websocket.StatusGoingAway)
	waitTunnels(t, ctx, e, 0)
	if len(e.logs.Lines("tunnel closed", "reason=\"client unresponsive\"")) != 1 {
		t.Errorf("log:\n%s", e.logs)
	}
}

// TestLiveClientKept guards that a client that answers pings is kept
// through a long idle period, and that its pongs to the proxy's pings never
// reach the backend.
func TestLiveClientKept(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	cr := newCloseRecorder(1)
	// ping_timeout is the time a live client has to answer: 3 s, as a
	// machine running test suites side by side under the race detector
	// has been seen to stall a goroutine for over a second. With it
	// longer than ping_interval, a ping goes out every ping_timeout, so
	// the second ping comes only if the answer to the first was taken:
	// a proxy that did not take the pongs for answers would end the
	// tunnel at the first timeout instead.
	const interval, timeout, rounds = 20 * time.Millisecond, 3 * time.Second, 2
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + testutil.Serve(t, cr),
		PingInterval: dur(interval), PingTimeout: timeout,
	}}})
	var pings atomic.Int64
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	msgs := make(chan string, 1)
	go func() { // Read answers pings as it goes
		for {
			_, m, err := c.Read(ctx)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(m)
		}
	}()
	// Idle for as long as the pings take to arrive, then talk again.
	for pings.Load() < rounds {
		select {
		case <-ctx.Done():
			t.Fatalf("%d pings", pings.Load())
		case m, open := <-msgs:
			t.Fatalf("while idling, after %d pings: message %q, tunnel open %v; log:\n%s", pings.Load(), m, open, e.logs)
		case <-time.After(interval):
		}
	}
	c.Write(ctx, websocket.MessageText, []byte("after"))
	if m := <-msgs; m != "after" {
		t.Fatalf("after idling: %q; log:\n%s", m, e.logs)
	}
	if n := cr.pongs.Load(); n != 0 {
		t.Errorf("backend received %d pongs meant for the proxy", n)
	}
	c.Close(websocket.StatusNormalClosure, "")
	cr.wantClose(t, ctx, websocket.StatusNormalClosure)
}

// TestBackendPingsPassDuringKeepalive guards that the backend's own pings
// reach the client and the client's pongs reach the backend, while the
// proxy pings the client too.
func TestBackendPingsPassDuringKeepalive(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	pinged := make(chan error, 1)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		rctx := c.CloseRead(r.Context())
		for range 10 {
			if err := c.Ping(rctx); err != nil {
				pinged <- err
				return
			}
		}
		pinged <- nil
		<-rctx.Done()
	})
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + backend, PingInterval: dur(5 * time.Millisecond),
	}}})
	c := e.mustDial(ctx, "/wss", nil)
	readCtx := c.CloseRead(ctx)
	if err := <-pinged; err != nil {
		t.Fatalf("backend pings: %v", err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	<-readCtx.Done()
}

// TestProxyPingInsideFragmentedMessage guards that a proxy ping sent while
// the backend is in the middle of a fragmented message goes between two
// fragments, where RFC 6455 §5.4 allows it: the client reads the message
// intact, with no protocol error, and saw pings during it.
func TestProxyPingInsideFragmentedMessage(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	const interval = 10 * time.Millisecond
	var want bytes.Buffer
	for i := range 10 {
		want.WriteString(strings.Repeat(string(rune('a'+i)), 1000))
	}
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		mw, _ := c.Writer(r.Context(), websocket.MessageText)
		for i := range 10 { // a slow backend: a fragment every 3 ping intervals
			mw.Write(want.Bytes()[i*1000 : (i+1)*1000])
			select {
			case <-time.After(3 * interval):
			case <-r.Context().Done():
				return
			}
		}
		mw.Close()
		c.Read(r.Context())
	})
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + backend, PingInterval: dur(interval),
	}}})
	var pings atomic.Int64
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	_, got, err := c.Read(ctx) // pings are handled inside this Read
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("message: %d bytes, %v", len(got), err)
	}
	if pings.Load() == 0 {
		t.Fatal("no proxy ping arrived inside the message")
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestMaxMessageSize guards max_message_size: a message over it, whole or
// fragmented, closes the tunnel with 1009 on both sides; one under it
// passes.
func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		parts []int
		ok    bool
	}{
		{"under", []int{900}, true},
		{"one frame over", []int{2000}, false},
		{"fragments over", []int{400, 400, 400}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 10*time.Second)
			cr := newCloseRecorder(1)
			e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
				Path: "/wss", Backend: "ws://" + testutil.Serve(t, cr), MaxMessageSize: 1000,
			}}})
			c := e.mustDial(ctx, "/wss", nil)
			w, _ := c.Writer(ctx, websocket.MessageBinary)
			for _, n := range tc.parts {
				w.Write(make([]byte, n))
			}
			w.Close()
			if tc.ok {
				if _, got, err := c.Read(ctx); err != nil || len(got) != 900 {
					t.Fatalf("echo: %d %v", len(got), err)
				}
				return
			}
			if code, _ := readClose(ctx, c); code != websocket.StatusMessageTooBig {
				t.Errorf("client got %d, want 1009", code)
			}
			cr.wantClose(t, ctx, websocket.StatusMessageTooBig)
		})
	}
}

// TestBackendNotReading guards send_timeout: a backend that accepts the
// upgrade and then never reads, while the client keeps sending and
// answering pings. The client is not the one at fault: while the proxy
// waits to write to the backend it reads nothing of the client, so the
// client's silence is no sign of death. The write that makes no progress
// for send_timeout names the backend: the client gets a 1014 close frame,
// the backend is dropped, and the log and the metric say so.
func TestBackendNotReading(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	release := make(chan struct{})
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		select { // never reads
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + backend,
		// A client answers within ping_timeout (500 ms: a loaded machine
		// can be slow to), but while the proxy's write to the backend is
		// stuck, its pongs are not read: a proxy that blamed the client
		// would do so at 500 ms, before send_timeout's 2 s.
		PingInterval: dur(50 * time.Millisecond), PingTimeout: 500 * time.Millisecond, SendTimeout: 2 * time.Second,
	}}})
	reg := prometheus.NewRegistry()
	if err := e.srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	c := e.mustDial(ctx, "/wss", nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // sends until the socket buffers are full, and on
		msg := make([]byte, 64<<10)
		for range 4000 {
			if c.Write(ctx, websocket.MessageBinary, msg) != nil {
				return
			}
		}
	})
	if code, reason := readClose(ctx, c); code != 1014 || reason != "backend not reading" {
		t.Fatalf("client got %d %q, want 1014 \"backend not reading\"", code, reason)
	}
	waitTunnels(t, ctx, e, 0)
	if n := len(e.logs.Lines("tunnel closed", "level=WARN", `reason="backend not reading"`)); n != 1 {
		t.Errorf("want one warning naming the backend; log:\n%s", e.logs)
	}
	if v := counter(t, reg, "wssproxy_tunnels_ended_total", "reason", "dead_peer"); v != 1 {
		t.Errorf("wssproxy_tunnels_ended_total{reason=\"dead_peer\"} = %v, want 1", v)
	}
}

// maxSizeClient starts a proxy with max_message_size = 1000 in front of a
// close recorder, and connects a raw client through it, closed when the
// test or ctx ends.
func maxSizeClient(t *testing.T, ctx context.Context, opts ...func(*proxy.Server)) (*closeRecorder, *env, net.Conn, *bufio.Reader) {
	t.Helper()
	cr := newCloseRecorder(1)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + testutil.Serve(t, cr), MaxMessageSize: 1000,
	}}}, opts...)
	conn, br := rawClient(t, e.addr, e.tls)
	t.Cleanup(func() { conn.Close() })
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	t.Cleanup(func() { stop() })
	return cr, e, conn, br
}

// TestMaxMessageSizeCloseReply guards that after a message over
// max_message_size the proxy still follows the sender's frames: the
// sender's reply to the proxy's 1009 ends its connection at once. (The
// close grace is made longer than the test waits, so only a reply seen
// ends it.)
func TestMaxMessageSizeCloseReply(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	cr, e, conn, br := maxSizeClient(t, ctx, func(s *proxy.Server) { proxy.SetCloseGrace(s, time.Hour) })
	conn.Write(frame(true, 0, 0x2, make([]byte, 2000), false))
	got := make([]byte, 2+len("message too big")+2)
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got[:4], []byte{0x88, 17, 0x03, 0xf1}) {
		t.Fatalf("client got %q, %v; want a 1009 close frame", got, err)
	}
	conn.Write(closeWith(1009, ""))
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 || ctx.Err() != nil {
		t.Fatalf("after the close reply: %q, %v (context: %v); want the connection closed", rest, err, ctx.Err())
	}
	cr.wantClose(t, ctx, websocket.StatusMessageTooBig)
	waitTunnels(t, ctx, e, 0)
}

// TestMaxMessageSizeTopBitLength guards max_message_size against a length
// that wraps it: 100 bytes, then a continuation claiming 2^64-50 (its top
// bit set, which RFC 6455 §5.2 forbids), used to sum to 50 and pass. It is
// a protocol error: 1002 to both sides, and the sender's connection closed
// after its close frame.
func TestMaxMessageSizeTopBitLength(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	cr, e, conn, br := maxSizeClient(t, ctx)
	start := frame(false, 0, 0x1, bytes.Repeat([]byte("a"), 100), false)
	wrap := []byte{0x80, 0x80 | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xce, 1, 2, 3, 4}
	conn.Write(cat(start, wrap, bytes.Repeat([]byte("x"), 64)))
	got, err := io.ReadAll(br)
	if want := append([]byte{0x88, 22, 0x03, 0xea}, "invalid frame length"...); !bytes.Equal(got, want) || err != nil || ctx.Err() != nil {
		t.Fatalf("client got %q, %v (context: %v); want %q, then the connection closed", got, err, ctx.Err(), want)
	}
	cr.wantClose(t, ctx, websocket.StatusProtocolError)
	waitTunnels(t, ctx, e, 0)
}

// TestIdleTimeoutAndMaxLifetime guards the two optional limits: each ends
// the tunnel with 1001 to both sides. Keepalive pings do not count as
// activity for idle_timeout; echoed messages do not extend max_lifetime.
func TestIdleTimeoutAndMaxLifetime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		route  proxy.Route
		talk   bool
		reason string
	}{
		{"idle", proxy.Route{IdleTimeout: 100 * time.Millisecond, PingInterval: dur(10 * time.Millisecond)}, false, "idle timeout"},
		{"lifetime", proxy.Route{MaxLifetime: 100 * time.Millisecond}, true, "connection lifetime reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 10*time.Second)
			cr := newCloseRecorder(1)
			rt := tc.route
			rt.Path, rt.Backend = "/wss", "ws://"+testutil.Serve(t, cr)
			e := startProxy(t, proxy.Config{Routes: []proxy.Route{rt}})
			c := e.mustDial(ctx, "/wss", nil)
			if tc.talk {
				for { // keeps talking until the proxy ends it
					if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
						break
					}
					if _, _, err := c.Read(ctx); err != nil {
						if websocket.CloseStatus(err) != websocket.StatusGoingAway {
							t.Errorf("client got %v, want 1001", err)
						}
						break
					}
				}
			} else if code, reason := readClose(ctx, c); code != websocket.StatusGoingAway || reason != tc.reason {
				t.Errorf("client got %d %q, want 1001 %q", code, reason, tc.reason)
			}
			cr.wantClose(t, ctx, websocket.StatusGoingAway)
		})
	}
}

// TestShutdownSends1001 guards graceful shutdown: 500 connected clients and
// their backends all get 1001 Going Away, and Shutdown returns once they
// have answered, within its deadline. (The close frames are spread over
// 100 ms, not the default third of shutdown_timeout: the spread is not
// what is tested.)
func TestShutdownSends1001(t *testing.T) {
	t.Parallel()
	const n = 500
	ctx := testutil.Context(t, 60*time.Second)
	cr := newCloseRecorder(n)
	cfg := route("/wss", "ws://"+testutil.Serve(t, cr))
	cfg.CloseSpread = dur(100 * time.Millisecond)
	e := startProxy(t, cfg)
	w := watchCloses(ctx, e, n)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v (open tunnels %d)", err, e.srv.OpenTunnels())
	}
	w.want(t, ctx, cr, websocket.StatusGoingAway)
}

// TestShutdownServesAccepted guards the drain's promise to a balancer: a
// connection the proxy accepted before Shutdown began (a balancer sent it
// before it saw /readyz fail) whose handshake arrives during the drain
// gets its tunnel, 101, and then 1001 like the others, not a 503.
func TestShutdownServesAccepted(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	cr := newCloseRecorder(1)
	cfg := route("/wss", "ws://"+testutil.Serve(t, cr))
	cfg.CloseSpread = new(time.Duration)
	e := startProxy(t, cfg)
	// Accepted: the TLS handshake needs the proxy's side of it.
	conn, err := tls.Dial("tcp", e.addr, e.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- e.srv.Shutdown(ctx) }()
	for !e.srv.Draining() {
		select {
		case <-ctx.Done():
			t.Fatal("Shutdown never began draining")
		case <-time.After(time.Millisecond):
		}
	}
	hc := &http.Client{Transport: &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	c, _, err := websocket.Dial(ctx, e.url("wss", "/wss"), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("a handshake on a connection accepted before the drain: %v", err)
	}
	defer c.CloseNow()
	if code, _ := readClose(ctx, c); code != websocket.StatusGoingAway {
		t.Errorf("client got %d, want 1001", code)
	}
	cr.wantClose(t, ctx, websocket.StatusGoingAway)
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestShutdownListenerClosedTwice guards Shutdown's result: the drain
// closes the listeners itself, so net/http's Shutdown, closing one that its
// Serve has not let go of yet, gets "use of closed network connection".
// That is no failure of the shutdown (wssproxy logged it as a shutdown
// timeout).
func TestShutdownListenerClosedTwice(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	srv, err := proxy.New(route("/wss", "ws://127.0.0.1:1"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln := &lingeringListener{Listener: testutil.Listen(t), accepting: make(chan struct{}), second: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ln.accepting:
	case <-ctx.Done():
		t.Fatal("Serve never accepted")
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, proxy.ErrShuttingDown) {
		t.Errorf("Serve: %v, want ErrShuttingDown", err)
	}
	if err := proxy.Leftovers(srv); err != nil {
		t.Error(err)
	}
}

// lingeringListener is a listener whose Accept, once it is closed, returns
// only after a second Close: its Serve still holds it while Shutdown runs.
type lingeringListener struct {
	net.Listener
	once      sync.Once
	accepting chan struct{} // closed when Accept is first called
	closes    atomic.Int32
	second    chan struct{} // closed at the second Close
}

func (l *lingeringListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.second
	}
	return c, err
}

func (l *lingeringListener) Close() error {
	err := l.Listener.Close()
	if l.closes.Add(1) == 2 {
		close(l.second)
	}
	return err
}

// TestHandoverSends1012 guards the close of a process being replaced by a
// binary upgrade: every tunnel's client and backend get 1012 Service
// Restart (spread over upgrade_drain), and Handover returns once the last
// tunnel has ended.
func TestHandoverSends1012(t *testing.T) {
	t.Parallel()
	const n = 20
	ctx := testutil.Context(t, 30*time.Second)
	cr := newCloseRecorder(n)
	cfg := route("/wss", "ws://"+testutil.Serve(t, cr))
	cfg.UpgradeDrain = 200 * time.Millisecond
	e := startProxy(t, cfg)
	w := watchCloses(ctx, e, n)
	if err := e.srv.Handover(ctx); err != nil {
		t.Fatalf("handover: %v (open tunnels %d)", err, e.srv.OpenTunnels())
	}
	if open := e.srv.OpenTunnels(); open != 0 {
		t.Errorf("Handover returned with %d tunnels open", open)
	}
	w.want(t, ctx, cr, websocket.StatusServiceRestart)
}

// TestDeadBackendDetected guards backend_ping_interval: a backend that stops
// answering (it never reads again) is found dead after ping_timeout, its
// connection dropped, and the client gets 1014.
func TestDeadBackendDetected(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	release := make(chan struct{})
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		select { // never reads: pings go unanswered
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + backend, PingInterval: dur(0),
		BackendPingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond,
	}}})
	c := e.mustDial(ctx, "/wss", nil)
	if code, reason := readClose(ctx, c); code != 1014 || reason != "backend unresponsive" {
		t.Fatalf("client got %d %q, want 1014", code, reason)
	}
	waitTunnels(t, ctx, e, 0)
}
