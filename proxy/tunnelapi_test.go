package proxy_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestMessagesMetric guards wssproxy_messages_total: read at scrape time,
// it counts an open tunnel's messages as far as its pumps have published
// them and an ended tunnel's in full, per route and direction, and never
// goes back when a tunnel ends.
func TestMessagesMetric(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	reg := prometheus.NewRegistry()
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})), func(s *proxy.Server) { s.RegisterMetrics(reg) })
	c := e.mustDial(ctx, "/wss", nil)
	for range 3 {
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hello"))
	}
	both := func() (float64, float64) {
		return counter(t, reg, "wssproxy_messages_total", "direction", "in"), counter(t, reg, "wssproxy_messages_total", "direction", "out")
	}
	waitFor(t, ctx, "3 messages each way while open", func() bool { in, out := both(); return in == 3 && out == 3 })
	c.Close(websocket.StatusNormalClosure, "")
	waitTunnels(t, ctx, e, 0)
	if in, out := both(); in != 3 || out != 3 {
		t.Errorf("after the end: in %v out %v, want 3 and 3", in, out)
	}
}
