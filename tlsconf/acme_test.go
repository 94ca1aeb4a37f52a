package tlsconf_test

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

const acmeHost = "chat.wssproxy.test"

// acmeEnv is wssproxy's certificate manager with ACME against a real
// Pebble CA, a TLS listener (TLS-ALPN-01) and a port-80-style listener
// (HTTP-01) on loopback.
type acmeEnv struct {
	opt      envOptions
	pebble   *testutil.Pebble
	cacheDir string
	tlsLn    net.Listener
	httpLn   net.Listener
	logs     *testutil.Logs
	m        *tlsconf.Manager
}

// envOptions shape an acmeEnv.
type envOptions struct {
	noTLSALPN bool           // Pebble validates TLS-ALPN-01 against a closed port: only HTTP-01 succeeds
	files     tlsconf.Config // certificate files served beside ACME
	pebble    testutil.PebbleOptions
	hosts     []string // default: acmeHost
	acme      func(*tlsconf.ACME)
	// poll and retry, when set, shorten the renewal loop (SetACMETiming).
	poll, retry time.Duration
	cacheDir    string // default: a new one
}

// newACMEEnv starts Pebble; with tlsALPN false, Pebble's TLS-ALPN-01
// validation goes to a closed port, so only HTTP-01 can succeed.
func newACMEEnv(t *testing.T, tlsALPN bool, validity time.Duration, files tlsconf.Config) *acmeEnv {
	t.Helper()
	return newACMEEnvWith(t, envOptions{noTLSALPN: !tlsALPN, files: files, pebble: testutil.PebbleOptions{Validity: validity}})
}

// newACMEEnvWith starts Pebble, and wssproxy's manager with Watch
// running, serving the seeds' echo on the TLS listener.
func newACMEEnvWith(t *testing.T, o envOptions) *acmeEnv {
	t.Helper()
	e := prepareACMEEnv(t, o)
	e.start(t)
	return e
}

// prepareACMEEnv starts Pebble and opens the listeners; start starts the
// rest.
func prepareACMEEnv(t *testing.T, o envOptions) *acmeEnv {
	t.Helper()
	e := &acmeEnv{opt: o, tlsLn: testutil.Listen(t), httpLn: testutil.Listen(t), cacheDir: cmp.Or(o.cacheDir, t.TempDir()), logs: &testutil.Logs{}}
	o.pebble.HTTPPort = testutil.Port(t, e.httpLn.Addr().String())
	o.pebble.TLSPort = testutil.Port(t, e.tlsLn.Addr().String())
	if o.noTLSALPN {
		o.pebble.TLSPort = testutil.Port(t, testutil.ClosedPort(t))
	}
	e.pebble = testutil.StartPebbleWith(t, o.pebble)
	return e
}

func (e *acmeEnv) start(t *testing.T) {
	t.Helper()
	e.m = e.manager(t)
	if e.opt.poll > 0 {
		tlsconf.SetACMETiming(e.m, e.opt.poll, e.opt.retry)
	}
	watch(t, e.m)
	startProxy(t, e.tlsLn, e.m.TLSConfig(), e.logs)
	redirect := &http.Server{Handler: e.m.HTTPHandler(proxy.RedirectHandler("443"))}
	var wg sync.WaitGroup
	wg.Go(func() { redirect.Serve(e.httpLn) })
	t.Cleanup(func() {
		redirect.Close()
		wg.Wait()
	})
}

func (e *acmeEnv) manager(t *testing.T) *tlsconf.Manager {
	t.Helper()
	cfg := e.opt.files
	hosts := e.opt.hosts
	if hosts == nil {
		hosts = []string{acmeHost}
	}
	cfg.ACME = tlsconf.ACME{
		Hosts:        hosts,
		AcceptTOS:    true,
		DirectoryURL: e.pebble.DirectoryURL,
		CARoots:      e.pebble.APIRoots,
		CacheDir:     e.cacheDir,
		Email:        "ops@wssproxy.test",
	}
	if e.opt.acme != nil {
		e.opt.acme(&cfg.ACME)
	}
	m, err := tlsconf.NewManager(cfg, slog.New(slog.NewTextHandler(e.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// watch runs m.Watch (ACME orders and renewals) until the test ends.
func watch(t *testing.T, m *tlsconf.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Watch(ctx, time.Second) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// seedExchange opens wss://chat.wssproxy.test/wss through the proxy,
// trusting only Pebble's root, and checks "tom" comes back. It returns the
// open connection and the served certificate.
func (e *acmeEnv) seedExchange(t *testing.T, roots *x509.CertPool) (*websocket.Conn, *x509.Certificate) {
	t.Helper()
	ctx := testutil.Context(t, 60*time.Second)
	client := wssClient(e.tlsLn.Addr().String(), roots)
	t.Cleanup(client.CloseIdleConnections)
	c, resp, err := websocket.Dial(ctx, "wss://"+acmeHost+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, e.logs)
	}
	t.Cleanup(func() { c.CloseNow() })
	if err := echoOnce(ctx, c, "tom"); err != nil {
		t.Fatal(err)
	}
	return c, resp.TLS.PeerCertificates[0]
}

// handshake returns the leaf served for serverName, verified against roots.
func (e *acmeEnv) handshake(serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", e.tlsLn.Addr().String(),
		&tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMETLSALPN guards certificates from a real ACME CA through
// TLS-ALPN-01: issued at the first handshake, a wss client completes the
// seeds' exchange trusting only the CA's root; a stranger's SNI gets a
// handshake failure and no order; a restart with the same cache serves the
// same certificate with the CA gone.
func TestACMETLSALPN(t *testing.T) {
	t.Parallel()
	e := newACMEEnv(t, true, 90*24*time.Hour, tlsconf.Config{})
	roots := e.pebble.Roots(t)
	_, leaf := e.seedExchange(t, roots)
	if e.m.Orders() != 1 || strings.Contains(e.logs.String(), "HTTP-01 challenge") {
		t.Errorf("orders %d; want 1 through TLS-ALPN-01:\n%s", e.m.Orders(), e.logs)
	}

	t.Run("stranger SNI", func(t *testing.T) {
		for _, name := range []string{"stranger.wssproxy.test", "", "localhost"} {
			if _, err := e.handshake(name, roots); err == nil {
				t.Errorf("handshake for %q succeeded", name)
			}
		}
		if e.m.Orders() != 1 {
			t.Errorf("orders %d after strangers, want 1", e.m.Orders())
		}
	})

	t.Run("restart reuses the cache", func(t *testing.T) {
		e.pebble.Stop() // any order now would fail
		m2 := e.manager(t)
		ln := testutil.Listen(t)
		startProxy(t, ln, m2.TLSConfig(), e.logs)
		e2 := &acmeEnv{opt: e.opt, tlsLn: ln, logs: e.logs, m: m2}
		_, leaf2 := e2.seedExchange(t, roots)
		if !leaf2.Equal(leaf) || m2.Orders() != 0 {
			t.Errorf("after restart: same certificate %v, orders %d", leaf2.Equal(leaf), m2.Orders())
		}
	})
}

// TestACMEWithFiles guards files and ACME mixed: a name a file covers gets
// the file's certificate and never an order; an ACME host gets ACME's.
func TestACMEWithFiles(t *testing.T) {
	t.Parallel()
	fileCert, _ := testutil.Cert(t, "files.wssproxy.test")
	c, k := testutil.WriteKeyPair(t, fileCert)
	e := newACMEEnv(t, true, 90*24*time.Hour, tlsconf.Config{Cert: c, Key: k})
	roots := e.pebble.Roots(t)
	pool := roots.Clone()
	pool.AddCert(fileCert.Leaf)
	if leaf, err := e.handshake("files.wssproxy.test", pool); err != nil || !leaf.Equal(fileCert.Leaf) {
		t.Errorf("file host: %v", err)
	}
	e.seedExchange(t, roots) // verifies against Pebble's root only
	// Watch orders the ACME host's certificate at start: that one order,
	// and none for the file host.
	if e.m.Orders() != 1 || strings.Contains(e.pebble.Logs(), "files.wssproxy.test") {
		t.Errorf("orders %d, want 1 for the ACME host and none for the file host:\n%s", e.m.Orders(), e.pebble.Logs())
	}
}

// TestACMEHTTP01 guards issuance through HTTP-01 on the plain-HTTP
// listener (TLS-ALPN-01 cannot succeed here), with the Host header's port
// ignored by the host policy.
func TestACMEHTTP01(t *testing.T) {
	t.Parallel()
	e := newACMEEnv(t, false, 90*24*time.Hour, tlsconf.Config{})
	e.seedExchange(t, e.pebble.Roots(t))
	if !strings.Contains(e.logs.String(), `msg="ACME HTTP-01 challenge" host=`+acmeHost+":") {
		t.Errorf("no HTTP-01 challenge served:\n%s", e.logs)
	}
}

// TestACMERenewal guards renewal: a certificate with a short validity is
// replaced in the background before it expires, while a tunnel opened
// under the old certificate keeps working.
func TestACMERenewal(t *testing.T) {
	t.Parallel()
	const validity = 30 * time.Second // autocert renews a third before expiry
	e := newACMEEnv(t, true, validity, tlsconf.Config{})
	roots := e.pebble.Roots(t)
	tunnel, first := e.seedExchange(t, roots)
	ctx := testutil.Context(t, 2*validity)
	for {
		leaf, err := e.handshake(acmeHost, roots)
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.Equal(first) {
			if !leaf.NotAfter.After(first.NotAfter) {
				t.Errorf("renewed certificate expires %v, not after %v", leaf.NotAfter, first.NotAfter)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not renewed before %v:\n%s", first.NotAfter, e.logs)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := echoOnce(ctx, tunnel, "still here"); err != nil {
		t.Fatalf("tunnel after renewal: %v", err)
	}
	if e.m.Orders() != 2 {
		t.Errorf("orders %d, want 2", e.m.Orders())
	}
}
