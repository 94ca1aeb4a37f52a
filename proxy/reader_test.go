package proxy_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestEndRightAfterData guards the tunnel's reads that skip the read(2)
// finding a socket empty (reader.go): a peer whose last data and end of
// stream (FIN, no close frame) arrive together still ends the tunnel: the
// other side gets its data and then a close frame. Each way, many times,
// since the two arrive in one wake-up only some of the time.
func TestEndRightAfterData(t *testing.T) {
	t.Parallel()
	const rounds = 12
	t.Run("backend", func(t *testing.T) {
		t.Parallel()
		ctx := testutil.Context(t, 60*time.Second)
		backend := rawBackend(t, func(conn net.Conn) {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			br, ok := acceptRaw(conn)
			if !ok {
				return
			}
			if _, _, err := readClientFrame(br); err != nil {
				return
			}
			// Last words and the FIN, with no close frame.
			conn.Write(frame(true, 0, 0x1, []byte("last words"), true))
			conn.Close()
		})
		e := startProxy(t, route("/wss", "ws://"+backend))
		for i := range rounds {
			c := e.mustDial(ctx, "/wss", nil)
			c.Write(ctx, websocket.MessageText, []byte("go"))
			_, msg, err := c.Read(ctx)
			if err != nil || string(msg) != "last words" {
				t.Fatalf("round %d: client got %q %v, want the backend's last words", i, msg, err)
			}
			if code, reason := readClose(ctx, c); code != 1014 || reason != "backend went away" {
				t.Fatalf("round %d: client got %d %q, want 1014", i, code, reason)
			}
		}
		waitTunnels(t, ctx, e, 0)
	})
	t.Run("client", func(t *testing.T) {
		t.Parallel()
		ctx := testutil.Context(t, 60*time.Second)
		type end struct {
			msg string
			err error
		}
		ends := make(chan end, 1)
		backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
			_, msg, err := c.Read(r.Context())
			if err == nil {
				_, _, err = c.Read(r.Context())
			}
			ends <- end{string(msg), err}
		})
		e := startProxy(t, route("/wss", "ws://"+backend))
		for i := range rounds {
			conn, _ := rawClient(t, e.addr, e.tls)
			// One message and the FIN: no close frame, no close_notify.
			conn.Write(frame(true, 0, 0x1, []byte("last words"), false))
			conn.(interface{ NetConn() net.Conn }).NetConn().Close()
			select {
			case got := <-ends:
				if got.msg != "last words" || websocket.CloseStatus(got.err) != websocket.StatusGoingAway {
					t.Fatalf("round %d: backend got %q then %v, want the message then 1001", i, got.msg, got.err)
				}
			case <-ctx.Done():
				t.Fatalf("round %d: the backend never saw the client go", i)
			}
		}
		waitTunnels(t, ctx, e, 0)
	})
}
