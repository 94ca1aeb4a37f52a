package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestClientGoneDuringBackendHandshake guards who is blamed when a client
// leaves while its handshake waits on the backend: a connection reset
// (HTTP/1.1) or a stream reset (HTTP/2) while the backend's 101 is due,
// or while a wss:// backend's TLS handshake is still going on. It is the
// client's doing: one debug line ("client gone before upgrade"), counted
// as wssproxy_requests_refused_total{kind="client-gone"}, no warn, nothing
// counted as backend-…, and the backend stays in rotation. It used to be a
// warn "request refused" refused=backend-handshake with "i/o timeout"
// (the deadline that ends the wait when the client leaves), and during a
// wss:// dial a panic (a refusal without an error).
func TestClientGoneDuringBackendHandshake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		scheme string // the backend's
		h2     bool
	}{
		{"h1, waiting for the 101", "ws", false},
		{"h2, waiting for the 101", "ws", true},
		{"h1, during the TLS dial", "wss", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 20*time.Second)
			// The backend takes the connection and reads what comes (the
			// handshake, or TLS's ClientHello), says so, and answers
			// nothing until the test ends.
			reached := make(chan struct{}, 1)
			release := make(chan struct{})
			backend := rawBackend(t, func(c net.Conn) {
				if _, err := bufio.NewReader(c).Peek(1); err != nil {
					return
				}
				reached <- struct{}{}
				<-release
			})
			t.Cleanup(func() { close(release) })
			logs := &testutil.Logs{}
			srv, err := proxy.New(route("/wss", tc.scheme+"://"+backend), slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			if err := srv.RegisterMetrics(reg); err != nil {
				t.Fatal(err)
			}
			e := startProxyServer(t, srv)

			if tc.h2 {
				h := e.h2Raw(t, ctx)
				h.connect(1, "/wss")
				waitReached(t, ctx, reached)
				if err := h.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
					t.Fatal(err)
				}
			} else {
				c, err := tls.Dial("tcp", e.addr, e.tls)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "GET /wss HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
				waitReached(t, ctx, reached)
				c.NetConn().(*net.TCPConn).SetLinger(0) // a reset, not a FIN
				c.Close()
			}
			logs.Wait(t, ctx, `client gone|request refused|panic`)
			if gone := logs.Lines("level=DEBUG", `msg="client gone before upgrade"`); len(gone) != 1 {
				t.Errorf("want one debug line \"client gone before upgrade\":\n%s", logs)
			}
			for _, bad := range []string{"level=WARN", "level=ERROR", "refused=backend", "panic"} {
				if l := logs.Lines(bad); len(l) > 0 {
					t.Errorf("logged %q: %s", bad, l[0])
				}
			}
			if got := counter(t, reg, "wssproxy_requests_refused_total", "kind", "client-gone"); got != 1 {
				t.Errorf(`wssproxy_requests_refused_total{kind="client-gone"} = %v, want 1`, got)
			}
			for _, kind := range []string{"backend-handshake", "backend-dial", "backend-timeout"} {
				if got := counter(t, reg, "wssproxy_requests_refused_total", "kind", kind); got != 0 {
					t.Errorf(`wssproxy_requests_refused_total{kind=%q} = %v, want 0`, kind, got)
				}
			}
			if got := counter(t, reg, "wssproxy_backend_dial_errors_total", "backend", tc.scheme+"://"+backend); got != 0 {
				t.Errorf("wssproxy_backend_dial_errors_total = %v, want 0", got)
			}
			if up := gauge(t, reg, "wssproxy_backend_up", "backend", tc.scheme+"://"+backend); up != 1 {
				t.Errorf("wssproxy_backend_up = %v, want 1: the backend is still in rotation", up)
			}
		})
	}
}

func waitReached(t *testing.T, ctx context.Context, reached <-chan struct{}) {
	t.Helper()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the handshake never reached the backend")
	}
}

// gauge is the value of the gauge called name whose label has value; -1
// when there is none.
func gauge(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return testutil.Metric(t, reg, name, label, value)
}
