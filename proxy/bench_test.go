package proxy_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// BenchmarkEcho measures one message echoed through the proxy over loopback
// TLS, against the same echo reached directly (ws://), so the proxy's cost
// is the difference. Allocations include the client's and the backend's.
func BenchmarkEcho(b *testing.B) {
	backend := echoBackend(b, echo.Options{})
	e := startProxy(b, route("/wss", backend))
	for _, size := range []int{32, 64 << 10} {
		msg := make([]byte, size)
		for _, via := range []string{"direct", "proxy"} {
			b.Run(fmt.Sprintf("%s/%dB", via, size), func(b *testing.B) {
				ctx := testutil.Context(b, time.Minute)
				var c *websocket.Conn
				var err error
				if via == "direct" {
					c, _, err = websocket.Dial(ctx, backend, nil)
				} else {
					c, _, err = e.dial(ctx, "/wss", nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer c.CloseNow()
				c.SetReadLimit(-1)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						b.Fatal(err)
					}
					if _, _, err := c.Read(ctx); err != nil {
						b.Fatal(err)
					}
				}
				// CPU of the whole process (client, proxy and backend): on a
				// shared machine steadier than wall time, and what the
				// proxy adds is the difference to "direct".
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshake measures a new TLS connection, upgrade through the
// proxy to the backend, one echo and a close.
func BenchmarkHandshake(b *testing.B) {
	e := startProxy(b, route("/wss", echoBackend(b, echo.Options{})))
	ctx := testutil.Context(b, time.Minute)
	msg := []byte("tom")
	b.ReportAllocs()
	for b.Loop() {
		e.client.CloseIdleConnections() // a full handshake each time
		c, _, err := e.dial(ctx, "/wss", nil)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(ctx, websocket.MessageText, msg)
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
		c.CloseNow()
	}
}
