package proxy_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/sockio"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestIdleTunnelsPark guards parking (internal/sockio) as the proxy uses
// it: the pumps of idle tunnels give up their goroutines, and a parked
// tunnel goes on as if nothing had happened: messages either way wake it,
// it parks again, and it ends as usual, by its peers or by the proxy; the
// gauge wssproxy_parked_sides follows.
func TestIdleTunnelsPark(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 30*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})), func(s *proxy.Server) { proxy.SetParkAfter(s, 5*time.Millisecond) })
	if io, why := e.srv.IOMode(); io != sockio.IORaw {
		t.Skipf("no raw engine here: %s", why)
	}
	const n = 20
	waitParked := func(want int) {
		t.Helper()
		waitFor(t, ctx, fmt.Sprintf("%d parked sides", want), func() bool { return proxy.EngineStats(e.srv).Parked == want })
	}
	before := runtime.NumGoroutine()
	var cs []*websocket.Conn
	for range n {
		c := e.mustDial(ctx, "/wss", nil)
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hello"))
		cs = append(cs, c)
	}
	waitParked(2 * n)
	// The clients' goroutines are this process's too: the proxy's own two
	// per tunnel are what must be gone.
	if g := runtime.NumGoroutine() - before; g >= 2*n {
		t.Errorf("%d goroutines more with %d tunnels parked, want fewer than %d", g, n, 2*n)
	}
	for round := range 3 {
		for i, c := range cs {
			roundTrip(t, ctx, c, websocket.MessageBinary, fmt.Appendf(nil, "round %d tunnel %d", round, i))
		}
		waitParked(2 * n)
	}
	// Ended by the peers: half by the client, half by the backend's
	// answer to the client's close.
	for _, c := range cs[:n/2] {
		c.Close(websocket.StatusNormalClosure, "bye")
	}
	waitTunnels(t, ctx, e, n-n/2)
	// Ended by the proxy, parked: a hard shutdown closes what is left.
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	e.srv.Shutdown(sctx)
	for _, c := range cs[n/2:] {
		if _, _, err := c.Read(ctx); err == nil {
			t.Fatal("a tunnel outlived the proxy's shutdown")
		}
		c.CloseNow()
	}
	waitTunnels(t, ctx, e, 0)
	waitParked(0)
}
