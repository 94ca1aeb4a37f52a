package tlsconf_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// serveTLS runs a TLS listener for m on 127.0.0.1:0 that completes
// handshakes and closes, until the test ends.
func serveTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln := tls.NewListener(testutil.Listen(t), cfg)
	testutil.ServeConns(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.(*tls.Conn).Handshake()
	})
	return ln.Addr().String()
}

// served returns the fingerprint of the certificate served for serverName.
func served(t testing.TB, addr, serverName string) (string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	return fmt.Sprintf("%X", sum), nil
}

func fingerprint(cert *tls.Certificate) string {
	return strings.ReplaceAll(tlsconf.Fingerprint(cert), ":", "")
}

// TestSNISelection guards how a certificate is chosen among three: by exact
// name, by wildcard, and the first for no SNI or an unknown name.
func TestSNISelection(t *testing.T) {
	testutil.CheckLeaks(t)
	a, _ := testutil.Cert(t, "a.example.test")
	b, _ := testutil.Cert(t, "b.example.test", "shared.example.test")
	w, _ := testutil.Cert(t, "*.wild.example.test")
	ac, ak := testutil.WriteKeyPair(t, a)
	bc, bk := testutil.WriteKeyPair(t, b)
	wc, wk := testutil.WriteKeyPair(t, w)
	m, err := tlsconf.NewManager(tlsconf.Config{Cert: ac, Key: ak, Certificates: []tlsconf.KeyPair{{Cert: wc, Key: wk}, {Cert: bc, Key: bk}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig())
	for _, tc := range []struct {
		sni  string
		want *tls.Certificate
	}{
		{"a.example.test", a},
		{"B.Example.Test", b},
		{"shared.example.test.", b},
		{"x.wild.example.test", w},
		{"y.x.wild.example.test", a}, // a wildcard covers one label
		{"", a},
		{"unknown.example.test", a},
	} {
		got, err := served(t, addr, tc.sni)
		if err != nil || got != fingerprint(tc.want) {
			t.Errorf("SNI %q: %v, wrong certificate", tc.sni, err)
		}
	}
	if !m.Covers("*.wild.example.test") || !m.Covers("b.example.test") || m.Covers("c.example.test") {
		t.Error("Covers")
	}
}

// TestMinVersion guards the TLS policy: TLS 1.0 and 1.1 are never
// accepted; with min_version "1.3", neither is 1.2.
func TestMinVersion(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tc := range []struct {
		min      string
		accepted []uint16
		refused  []uint16
	}{
		{"", []uint16{tls.VersionTLS12, tls.VersionTLS13}, []uint16{tls.VersionTLS10, tls.VersionTLS11}},
		{"1.3", []uint16{tls.VersionTLS13}, []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12}},
	} {
		m, err := tlsconf.NewManager(tlsconf.Config{MinVersion: tc.min}, nil)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, m.TLSConfig())
		try := func(v uint16) error {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
			if err == nil {
				c.Close()
			}
			return err
		}
		for _, v := range tc.accepted {
			if err := try(v); err != nil {
				t.Errorf("min %q: %s refused: %v", tc.min, tls.VersionName(v), err)
			}
		}
		for _, v := range tc.refused {
			if err := try(v); err == nil {
				t.Errorf("min %q: %s accepted", tc.min, tls.VersionName(v))
			}
		}
	}
}

// reloadEnv is a Manager watching one certificate pair in a directory.
type reloadEnv struct {
	m         *tlsconf.Manager
	addr      string
	dir       string
	cert, key string
	logs      *testutil.Logs
}

func newReloadEnv(t *testing.T, cfgPaths func(dir string) (string, string)) *reloadEnv {
	t.Helper()
	e := &reloadEnv{dir: t.TempDir(), logs: &testutil.Logs{}}
	e.cert, e.key = cfgPaths(e.dir)
	first, _ := testutil.Cert(t, "chat.example.test")
	e.install(t, first)
	var err error
	e.m, err = tlsconf.NewManager(tlsconf.Config{Cert: e.cert, Key: e.key}, slog.New(slog.NewTextHandler(e.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.m.Watch(ctx, 10*time.Millisecond) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	e.addr = serveTLS(t, e.m.TLSConfig())
	return e
}

// install writes cert as the watched files, the plain way: in place.
func (e *reloadEnv) install(t *testing.T, cert *tls.Certificate) {
	c, k := testutil.WriteKeyPair(t, cert)
	copyFile(t, c, e.cert)
	copyFile(t, k, e.key)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *reloadEnv) serves(t *testing.T, want *tls.Certificate) {
	t.Helper()
	got, err := served(t, e.addr, "chat.example.test")
	if err != nil || got != fingerprint(want) {
		t.Fatalf("served %s (%v), want %s", got, err, fingerprint(want))
	}
}

// waitServes waits until new handshakes at addr for serverName get want,
// or fails the test when ctx ends: what a reload is for. A handshake
// every 10 ms: nothing announces the certificate's change but the log.
func waitServes(t *testing.T, ctx context.Context, addr, serverName string, want *tls.Certificate) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := served(t, addr, serverName)
		if err == nil && got == fingerprint(want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("new handshakes still get %s (%v), want %s", got, err, fingerprint(want))
		case <-tick.C:
		}
	}
}

// TestReloadOnChange guards hot reload for each way certificates are
// replaced on disk, and that a broken or half-written replacement is
// refused while the old certificate keeps serving.
func TestReloadOnChange(t *testing.T) {
	plain := func(dir string) (string, string) {
		return filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	}
	for _, tc := range []struct {
		name    string
		paths   func(dir string) (string, string)
		replace func(t *testing.T, e *reloadEnv, next *tls.Certificate)
	}{
		{"rewrite in place", plain, func(t *testing.T, e *reloadEnv, next *tls.Certificate) {
			e.install(t, next)
		}},
		{"rename over", plain, func(t *testing.T, e *reloadEnv, next *tls.Certificate) {
			c, k := testutil.WriteKeyPair(t, next)
			os.Rename(k, e.key)
			os.Rename(c, e.cert)
		}},
		{"kubernetes secret symlink swap", func(dir string) (string, string) {
			// tls.crt -> ..data/tls.crt, ..data -> ..v1
			os.Mkdir(filepath.Join(dir, "..v1"), 0o700)
			os.Symlink("..v1", filepath.Join(dir, "..data"))
			os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt"))
			os.Symlink("..data/tls.key", filepath.Join(dir, "tls.key"))
			return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		}, func(t *testing.T, e *reloadEnv, next *tls.Certificate) {
			v2 := filepath.Join(e.dir, "..v2")
			os.Mkdir(v2, 0o700)
			c, k := testutil.WriteKeyPair(t, next)
			copyFile(t, c, filepath.Join(v2, "tls.crt"))
			copyFile(t, k, filepath.Join(v2, "tls.key"))
			os.Symlink("..v2", filepath.Join(e.dir, "..data.tmp"))
			os.Rename(filepath.Join(e.dir, "..data.tmp"), filepath.Join(e.dir, "..data"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			e := newReloadEnv(t, tc.paths)
			next, _ := testutil.Cert(t, "chat.example.test")
			tc.replace(t, e, next)
			waitServes(t, testutil.Context(t, 10*time.Second), e.addr, "chat.example.test", next)
		})
	}

	t.Run("broken replacement keeps the old certificate", func(t *testing.T) {
		testutil.CheckLeaks(t)
		e := newReloadEnv(t, plain)
		old, _ := served(t, e.addr, "chat.example.test")
		ctx := testutil.Context(t, 10*time.Second)
		refusals := 0
		for _, step := range []func(){
			func() { os.WriteFile(e.cert, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600) },                      // half-written
			func() { other, _ := testutil.Cert(t); c, _ := testutil.WriteKeyPair(t, other); copyFile(t, c, e.cert) }, // key mismatch
			func() { os.Remove(e.key) }, // gone
		} {
			step()
			refusals++
			e.logs.Wait(t, ctx, fmt.Sprintf(`(?s)(certificate reload refused.*){%d}`, refusals))
			if got, err := served(t, e.addr, "chat.example.test"); err != nil || got != old {
				t.Fatalf("after a broken replacement: %v, certificate changed", err)
			}
		}
		// A good replacement, and on SIGHUP's path (Reload) too.
		next, _ := testutil.Cert(t, "chat.example.test")
		e.install(t, next)
		waitServes(t, ctx, e.addr, "chat.example.test", next)
		if err := e.m.Reload(); err != nil {
			t.Fatal(err)
		}
		e.serves(t, next)
	})
}
