// Package testutil holds helpers shared by wssproxy's tests: certificates
// made in t.TempDir(), real backends on 127.0.0.1:0, and leak checks.
package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wssproxy/wssproxy/tlsconf"
)

// Cert makes a self-signed ECDSA P-256 certificate for localhost and the
// loopback addresses, and a client config that trusts it.
func Cert(t testing.TB, hosts ...string) (*tls.Certificate, *tls.Config) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	cert, err := tlsconf.SelfSigned(hosts, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, &tls.Config{RootCAs: certPool(cert), ServerName: hosts[0]}
}

// Issue makes an ECDSA P-256 certificate for names (host names or IP
// addresses) signed by parent, or self-signed when parent is nil, valid from
// notBefore to notAfter. isCA makes it a CA that can sign others.
func Issue(t testing.TB, names []string, isCA bool, parent *tls.Certificate, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: isCA,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if !isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return sign(t, tmpl, key, parent)
}

// sign makes the certificate tmpl describes for key, signed by parent or
// self-signed when parent is nil.
func sign(t testing.TB, tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *tls.Certificate) *tls.Certificate {
	t.Helper()
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// IssueClient makes an ECDSA P-256 client certificate (clientAuth) for
// cn signed by ca, valid for an hour either side of now; with ca nil, a CA
// to sign them with, which has no extended key usage (Go's verifier holds
// a CA's to what it signs, so Issue's, serverAuth, would refuse clients).
func IssueClient(t testing.TB, cn string, ca *tls.Certificate) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Devices"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage, tmpl.ExtKeyUsage = true, true, x509.KeyUsageCertSign, nil
	}
	return sign(t, tmpl, key, ca)
}

// WriteKeyPair writes cert as PEM files in t.TempDir() and returns their
// paths.
func WriteKeyPair(t testing.TB, cert *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain bytes.Buffer
	for _, der := range cert.Certificate {
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Serve runs h on a fresh 127.0.0.1:0 listener until the test ends and
// returns its address.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := Listen(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Listen opens a TCP listener on 127.0.0.1:0, closed when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// ClosedPort returns a loopback address on which nothing listens.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Context returns a context that ends with the test or after d, whichever
// comes first: every wait in a test is bounded by one.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Deadline returns a context that ends with the test, or a little before
// the test binary's own deadline (go test -timeout, 10 minutes by
// default), whichever comes first. It bounds the waits of a long test
// under load (a thousand tunnels, a drain) that only fail to end when
// something is broken: no time of its own that a machine busy with a
// second copy of the suite could outlast, and the test still fails with
// its own message rather than the binary's panic. With -timeout 0 it ends
// only with the test.
func Deadline(t *testing.T) context.Context {
	end, ok := t.Deadline()
	if !ok {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(-time.Until(end)/20))
	t.Cleanup(cancel)
	return ctx
}

// CheckLeaks fails the test if, once everything else registered with
// t.Cleanup has run, goroutines started during the test are still running
// or the process holds more open files than when CheckLeaks was called.
// Call it first, so that its cleanup runs last.
//
// It counts the whole process, so it is only valid in a serial test (one
// that never calls t.Parallel, nor has a parent that does): go test runs
// a package's serial tests one by one, then its parallel tests together,
// and any goroutine or file of a test running beside this one would count
// as this one's leak, or hide it. A parallel test checks its own objects
// instead (that its server has no tunnel open, that its process exits
// cleanly), and goleak.VerifyTestMain in TestMain checks the package's
// goroutines once every test has ended.
func CheckLeaks(t testing.TB) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	before := OpenFDs()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore)
		// Closing a socket is synchronous, but a peer's goroutine may
		// still be on its way out; give the count a bounded time to settle.
		deadline := time.Now().Add(5 * time.Second)
		n := OpenFDs()
		for n > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			n = OpenFDs()
		}
		if n > before {
			t.Errorf("open files: %d after the test, %d before", n, before)
		}
	})
}

// OpenFDs counts this process's open file descriptors.
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// ServeConns accepts connections on ln and hands each to fn in its own
// goroutine (closing it after), until the test ends; then it waits for
// every fn to return.
func ServeConns(t testing.TB, ln net.Listener, fn func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				fn(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// certPool returns a pool holding cert's leaf, for clients that trust it.
func certPool(cert *tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		p.AddCert(leaf)
	}
	return p
}
