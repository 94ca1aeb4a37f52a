package proxy_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestMessageRateThrottle guards message_rate with the default action
// over real sockets: a client that writes 1,000 messages as fast as it
// can (about one second's worth without the limit) under message_rate =
// 100, message_burst = 100 gets every one to the backend, in order, and
// message k (from 0) arrives no sooner than (k+1-100)/100 s after the
// client started: a bound the limiter guarantees, so it cannot flake
// (internal/tunnel's TestRateLimitThrottle checks the exact timing in fake
// time). The throttles are counted and the access line says how long.
func TestMessageRateThrottle(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	got := make(chan string, 1000)
	backend := wsBackend(t, func(c *websocket.Conn, _ *http.Request) {
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			got <- string(msg)
		}
	})
	reg := prometheus.NewRegistry()
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + backend,
		MessageRate: 100, MessageBurst: 100}}}, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	start := time.Now()
	c := e.mustDial(ctx, "/wss", nil)
	sent := make(chan error, 1)
	go func() {
		for k := range 1000 {
			if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(k))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for k := range 1000 {
		var msg string
		select {
		case msg = <-got:
		case <-ctx.Done():
			t.Fatalf("%d messages of 1000 arrived", k)
		}
		if msg != fmt.Sprint(k) {
			t.Fatalf("message %d is %q: lost or reordered", k, msg)
		}
		if earliest := time.Duration(k+1-100) * time.Second / 100; time.Since(start) < earliest {
			t.Fatalf("message %d after %v, sooner than the limit allows (%v)", k, time.Since(start), earliest)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if v := counter(t, reg, "wssproxy_rate_limited_total", "action", "throttle"); v < 1 {
		t.Errorf("wssproxy_rate_limited_total{action=throttle} = %v", v)
	}
	c.Close(websocket.StatusNormalClosure, "")
	line := e.logs.Wait(t, ctx, `tunnel closed.* throttled=`)
	if !strings.Contains(line, "close_code=1000") {
		t.Errorf("access line: %s", line)
	}
}

// TestMessageRateClose guards rate_limit_action = "close": the message
// over the limit does not reach the backend, the client gets 1008, so
// does the backend, and it is counted.
func TestMessageRateClose(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	cr := newCloseRecorder(1)
	reg := prometheus.NewRegistry()
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + testutil.Serve(t, cr),
		MessageRate: 1, MessageBurst: 5, RateLimitAction: "close"}}}, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	c := e.mustDial(ctx, "/wss", nil)
	var err error
	for k := 0; k < 100 && err == nil; k++ {
		err = c.Write(ctx, websocket.MessageText, []byte("m"))
	}
	for err == nil { // the echoes of those that passed, then the close
		_, _, err = c.Read(ctx)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation {
		t.Fatalf("client read %v, want 1008", err)
	}
	cr.wantClose(t, ctx, websocket.StatusPolicyViolation)
	waitTunnels(t, ctx, e, 0)
	if v := counter(t, reg, "wssproxy_rate_limited_total", "action", "close"); v != 1 {
		t.Errorf("wssproxy_rate_limited_total{action=close} = %v, want 1", v)
	}
	if v := counter(t, reg, "wssproxy_tunnels_ended_total", "reason", "rate_limited"); v != 1 {
		t.Errorf("wssproxy_tunnels_ended_total{reason=rate_limited} = %v, want 1", v)
	}
}

// TestRateLimitKeys guards the limit keys' checks: each mistake names its
// key.
func TestRateLimitKeys(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		r    proxy.Route
		want string
	}{
		{"negative rate", proxy.Route{MessageRate: -1}, "route[1].message_rate: must be a number of at least 0"},
		{"burst alone", proxy.Route{MessageBurst: 5}, "route[1].message_burst: is set without message_rate"},
		{"byte burst alone", proxy.Route{ByteBurst: 5}, "route[1].byte_burst: is set without byte_rate"},
		{"unknown action", proxy.Route{MessageRate: 1, RateLimitAction: "drop"}, `route[1].rate_limit_action: must be "throttle" or "close", got "drop"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.r.Path, c.r.Backend = "/wss", "ws://127.0.0.1:1"
			_, err := proxy.Compile(proxy.Config{Routes: []proxy.Route{c.r}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	ok := proxy.Route{Path: "/wss", Backend: "ws://127.0.0.1:1", MessageRate: 10, ByteRate: 1e6, ByteBurst: 1 << 20, MessageRatePerIP: 50, RateLimitAction: "throttle"}
	if _, err := proxy.Compile(proxy.Config{Routes: []proxy.Route{ok}}); err != nil {
		t.Fatal(err)
	}
}
