package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestSeedExchange guards the seeds' own test: connect to wss://…/wss, send
// "tom", get the reply.
func TestSeedExchange(t *testing.T) {
	// Not parallel: the plainest tunnel is one of the few end-to-end tests
	// kept serial for CheckLeaks, which counts the whole process's
	// goroutines and fds (parallel tests have Leftovers and TestMain's
	// goleak).
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})))
	c := e.mustDial(ctx, "/wss", nil)
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestMessages guards that messages of every kind and size pass unchanged.
func TestMessages(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})))
	c := e.mustDial(ctx, "/wss", nil)
	c.SetReadLimit(-1)
	big := make([]byte, 16<<20)
	rand.Read(big)
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
	}{
		{"text", websocket.MessageText, []byte("héllo, wörld")},
		{"empty", websocket.MessageText, nil},
		{"binary", websocket.MessageBinary, []byte{0, 1, 2, 0xff, 0xfe}},
		{"16MiB", websocket.MessageBinary, big},
	} {
		t.Run(tc.name, func(t *testing.T) { roundTrip(t, ctx, c, tc.typ, tc.msg) })
	}
	t.Run("fragmented", func(t *testing.T) {
		w, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		for i := range 10 { // each Write is one frame of the message
			part := fmt.Sprintf("part %d;", i)
			want.WriteString(part)
			if _, err := w.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("got %q, %v; want %q", got, err, want.Bytes())
		}
	})
}

// TestPipelinedOrder guards that 200 messages sent without waiting arrive in
// the order they were sent.
func TestPipelinedOrder(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})))
	c := e.mustDial(ctx, "/wss", nil)
	const n = 200
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if string(got) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestPingPongPayloads guards that pings and their payloads pass both ways
// and the peer's pongs come back.
func TestPingPongPayloads(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	var mu sync.Mutex
	var backendSaw, clientSaw [][]byte
	record := func(dst *[][]byte) func(context.Context, []byte) bool {
		return func(_ context.Context, p []byte) bool {
			mu.Lock()
			defer mu.Unlock()
			*dst = append(*dst, bytes.Clone(p))
			return true
		}
	}
	backendPinged := make(chan error, 1)
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OnPingReceived: record(&backendSaw)})
		if err != nil {
			return
		}
		defer c.CloseNow()
		// Read in the background so pongs are processed, then ping.
		ctx := c.CloseRead(r.Context())
		backendPinged <- c.Ping(ctx)
		<-ctx.Done()
	}))
	e := startProxy(t, route("/wss", "ws://"+backend))
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{OnPingReceived: record(&clientSaw)})
	readCtx := c.CloseRead(ctx) // process control frames
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("client ping: %v", err)
	}
	if err := <-backendPinged; err != nil {
		t.Fatalf("backend ping: %v", err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	<-readCtx.Done()
	mu.Lock()
	defer mu.Unlock()
	// coder/websocket's ping payloads are a counter: each side saw the
	// other's exact payload.
	if len(backendSaw) != 1 || len(clientSaw) != 1 || len(backendSaw[0]) == 0 || len(clientSaw[0]) == 0 {
		t.Fatalf("pings seen: backend %q, client %q", backendSaw, clientSaw)
	}
}

// TestSubprotocolAndCompression guards that subprotocols and
// permessage-deflate negotiate end to end, between client and backend.
func TestSubprotocolAndCompression(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{
		Subprotocols: []string{"chat.v2", "chat.v1"},
		Compression:  true,
	})))
	for _, tc := range []struct {
		name    string
		offer   []string
		want    string
		deflate bool
	}{
		{"backend picks its preference", []string{"chat.v1", "chat.v2"}, "chat.v2", false},
		{"only one offered", []string{"chat.v1"}, "chat.v1", false},
		{"none in common", []string{"mqtt"}, "", false},
		{"permessage-deflate", nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &websocket.DialOptions{Subprotocols: tc.offer}
			if tc.deflate {
				opts.CompressionMode = websocket.CompressionContextTakeover
			}
			c, resp, err := e.dial(ctx, "/wss", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if got := c.Subprotocol(); got != tc.want {
				t.Errorf("subprotocol %q, want %q", got, tc.want)
			}
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			if got := strings.Contains(ext, "permessage-deflate"); got != tc.deflate {
				t.Errorf("Sec-WebSocket-Extensions %q, want deflate %v", ext, tc.deflate)
			}
			msg := bytes.Repeat([]byte("compressible "), 2000)
			roundTrip(t, ctx, c, websocket.MessageText, msg)
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
}

// TestCloseCodesPassThrough guards that a close frame's code and reason go
// from backend to client unchanged (the tunnel is byte-transparent).
func TestCloseCodesPassThrough(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.Close(4001, "room closed")
	}))
	e := startProxy(t, route("/wss", "ws://"+backend))
	c := e.mustDial(ctx, "/wss", nil)
	_, _, err := c.Read(ctx)
	if s, r := websocket.CloseStatus(err), closeReason(err); s != 4001 || r != "room closed" {
		t.Fatalf("got close %d %q (%v), want 4001 \"room closed\"", s, r, err)
	}
}

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

// TestPeerVanishes guards that when one side drops its TCP connection
// without a close frame, the other side gets a close frame (1014 Bad Gateway
// to the client, 1001 Going Away to the backend), and the tunnel is gone.
func TestPeerVanishes(t *testing.T) {
	// Not parallel: an end without a close frame, either way, is where a
	// tunnel could leave a goroutine or an fd behind, so it keeps the
	// process-wide CheckLeaks.
	t.Run("backend", func(t *testing.T) {
		testutil.CheckLeaks(t)
		ctx := testutil.Context(t, 10*time.Second)
		backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			c.Read(r.Context()) // one message, then drop TCP
			c.CloseNow()
		}))
		e := startProxy(t, route("/wss", "ws://"+backend))
		c := e.mustDial(ctx, "/wss", nil)
		c.Write(ctx, websocket.MessageText, []byte("bye"))
		if code, reason := readClose(ctx, c); code != 1014 || reason != "backend went away" {
			t.Fatalf("client got %d %q, want 1014", code, reason)
		}
		waitTunnels(t, ctx, e, 0)
	})
	t.Run("client", func(t *testing.T) {
		testutil.CheckLeaks(t)
		ctx := testutil.Context(t, 10*time.Second)
		backendErr := make(chan error, 1)
		backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
			_, _, err := c.Read(r.Context())
			backendErr <- err
		})
		e := startProxy(t, route("/wss", "ws://"+backend))
		c := e.mustDial(ctx, "/wss", nil)
		c.CloseNow()
		select {
		case err := <-backendErr:
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("backend got %v, want 1001", err)
			}
		case <-ctx.Done():
			t.Fatal("backend never saw the client go")
		}
		waitTunnels(t, ctx, e, 0)
	})
}

// waitTunnels waits until the proxy has n open tunnels.
func waitTunnels(t testing.TB, ctx context.Context, e *env, n int64) {
	t.Helper()
	for e.srv.OpenTunnels() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("open tunnels: %d, want %d", e.srv.OpenTunnels(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestManyTunnels guards that 1,000 tunnels can be open and echoing at once.
// Its clients read nothing until all are open, so they answer no pings:
// keepalive is off, or on a loaded machine, where the dials take longer
// than ping_interval and ping_timeout, the first ones would be found dead.
func TestManyTunnels(t *testing.T) {
	t.Parallel()
	const n = 1000
	ctx := testutil.Context(t, 2*time.Minute)
	cfg := route("/wss", echoBackend(t, echo.Options{}))
	cfg.Routes[0].PingInterval = new(time.Duration)
	e := startProxy(t, cfg)
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := e.dial(ctx, "/wss", nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns[i] = c
	}
	if got := e.srv.OpenTunnels(); got != n {
		t.Fatalf("open tunnels %d, want %d", got, n)
	}
	// Every tunnel echoes while all are open, concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Go(func() {
			msg := []byte(fmt.Sprintf("tunnel %d", i))
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				errs <- err
				return
			}
			_, got, err := c.Read(ctx)
			if err == nil && !bytes.Equal(got, msg) {
				err = fmt.Errorf("tunnel %d got %q", i, got)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.CloseNow()
	}
	waitTunnels(t, ctx, e, 0)
}
