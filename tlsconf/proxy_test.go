package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// The tests that wait on something slow (Pebble, a renewal, 200 tunnels)
// run in parallel: each has its own listeners, files and processes. In
// place of testutil.CheckLeaks, which only serial tests may use, their
// proxies must have no tunnel open once the test's clients have closed
// theirs (startProxy), their serving goroutines are waited for, and
// goleak.VerifyTestMain checks the whole package at the end. The quick
// ones stay serial and keep CheckLeaks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startProxy serves /wss → an echo backend through the proxy on ln, with
// TLS from cfg. When the test ends, after the cleanups registered later
// (the clients' closes), no tunnel may be left open.
func startProxy(t testing.TB, ln net.Listener, cfg *tls.Config, logs *testutil.Logs) *proxy.Server {
	t.Helper()
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{{
		Path: "/wss", Backend: "ws://" + testutil.Serve(t, echo.Handler(echo.Options{})),
	}}}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(tls.NewListener(ln, cfg)) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for srv.OpenTunnels() > 0 && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond): // a tunnel's end sends no event
			}
		}
		if n := srv.OpenTunnels(); n > 0 {
			t.Errorf("%d tunnels still open 10 s after their clients closed", n)
		}
		srv.Close()
		wg.Wait()
	})
	return srv
}

// wssClient dials name:port at addr's IP (like curl --resolve), trusting
// roots.
func wssClient(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func echoOnce(ctx context.Context, c *websocket.Conn, msg string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err == nil && string(got) != msg {
		err = fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return err
}

// TestReloadUnder200Tunnels guards that replacing the certificate files
// under 200 open tunnels drops none of them, while new handshakes get the
// new certificate.
func TestReloadUnder200Tunnels(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	old, _ := testutil.Cert(t, "chat.example.test")
	c, k := testutil.WriteKeyPair(t, old)
	copyFile(t, c, certFile)
	copyFile(t, k, keyFile)
	logs := &testutil.Logs{}
	m, err := tlsconf.NewManager(tlsconf.Config{Cert: certFile, Key: keyFile}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.Watch(wctx, 10*time.Millisecond) })
	defer func() { stopWatch(); wg.Wait() }()
	ln := testutil.Listen(t)
	srv := startProxy(t, ln, m.TLSConfig(), logs)
	next, _ := testutil.Cert(t, "chat.example.test")
	roots := x509.NewCertPool()
	roots.AddCert(old.Leaf)
	roots.AddCert(next.Leaf)
	client := wssClient(ln.Addr().String(), roots)
	defer client.CloseIdleConnections()

	conns := make([]*websocket.Conn, 200)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, "wss://chat.example.test/wss", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	for round, replace := range []func(){
		func() { // rename over, as certbot's deploy hooks do
			c, k := testutil.WriteKeyPair(t, next)
			copyFile(t, k, keyFile+".new")
			copyFile(t, c, certFile+".new")
			renameOver(t, keyFile+".new", keyFile)
			renameOver(t, certFile+".new", certFile)
		},
		func() { // rewrite in place, back to the old one
			c, k := testutil.WriteKeyPair(t, old)
			copyFile(t, k, keyFile)
			copyFile(t, c, certFile)
		},
	} {
		replace()
		waitServes(t, ctx, ln.Addr().String(), "chat.example.test", []*tls.Certificate{next, old}[round])
		for i, c := range conns {
			if err := echoOnce(ctx, c, fmt.Sprintf("round %d tunnel %d", round, i)); err != nil {
				t.Fatalf("round %d tunnel %d: %v", round, i, err)
			}
		}
		if n := srv.OpenTunnels(); n != 200 {
			t.Fatalf("open tunnels %d", n)
		}
	}
}

func renameOver(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
