package proxy_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// gatedListener holds every Accept until its gate opens, so that a test
// can have connections queued in the kernel when a shutdown begins. Its
// socket's deadline and descriptor are reachable, as the proxy needs.
type gatedListener struct {
	*net.TCPListener
	gate chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	<-l.gate
	return l.TCPListener.Accept()
}

func (l *gatedListener) SyscallConn() (syscall.RawConn, error) { return l.TCPListener.SyscallConn() }

// TestShutdownServesQueued guards the connections whose TCP handshake had
// completed when a shutdown began, still in the listening socket's queue:
// they are taken and answered, not reset by the listener's close (a load
// balancer could not send such a connection elsewhere).
func TestShutdownServesQueued(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" {
		t.Skip("elsewhere a shutdown closes the listeners at once")
	}
	ctx := testutil.Context(t, 30*time.Second)
	srv, err := proxy.New(route("/wss", "ws://"+testutil.ClosedPort(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, clientTLS := testutil.Cert(t)
	ln := &gatedListener{TCPListener: testutil.Listen(t).(*net.TCPListener), gate: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		srv.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}})
	})
	const n = 5
	var conns []net.Conn
	for range n { // each in the kernel's queue once Dial returns
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(ctx) }()
	waitFor(t, ctx, "the drain to begin", srv.Draining)
	close(ln.gate)
	for i, c := range conns {
		tc := tls.Client(c, clientTLS)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("queued connection %d: TLS handshake: %v (reset by the listener's close?)", i, err)
		}
		tc.Write([]byte("GET /elsewhere HTTP/1.1\r\nHost: localhost\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatalf("queued connection %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("queued connection %d: status %d, want 404", i, resp.StatusCode)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after the shutdown")
	}
	if err := proxy.Leftovers(srv); err != nil {
		t.Error(err)
	}
}
