package proxy_test

import (
	"net"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestCloseBothBlocked guards the tunnel's close (closeGrace after the
// proxy's own close) when both pumps are stuck writing: both peers send
// without reading. Closing the connections must end the tunnel, long
// before send_timeout.
func TestCloseBothBlocked(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	backend := rawBackend(t, func(conn net.Conn) {
		defer conn.Close()
		if _, ok := acceptRaw(conn); !ok {
			return
		}
		f := frame(true, 0, 0x2, make([]byte, 32<<10), true)
		for {
			conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write(f); err != nil {
				return // never reads
			}
		}
	})
	cfg := route("/wss", "ws://"+backend)
	cfg.Routes[0].MaxLifetime = time.Second
	cfg.Routes[0].SendTimeout = time.Hour
	e := startProxy(t, cfg, func(s *proxy.Server) { proxy.SetCloseGrace(s, 300*time.Millisecond) })
	conn, _ := rawClient(t, e.addr, e.tls)
	defer conn.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := frame(true, 0, 0x2, make([]byte, 32<<10), false)
		for {
			conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write(f); err != nil {
				return // never reads
			}
		}
	}()
	waitTunnels(t, ctx, e, 0)
	conn.Close()
	<-done
}
