package sockio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a loopback TCP connection: its two ends, closed when the
// test ends.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	return pair(t, "tcp", "127.0.0.1:0")
}

// unixPair is a unix socket connection in t.TempDir().
func unixPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	return pair(t, "unix", filepath.Join(t.TempDir(), "s"))
}

func pair(t testing.TB, network, addr string) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// testCert is a self-signed certificate for localhost and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsPair is a TLS connection over loopback TCP: the server's end reads
// through wrap(socket), the client's end is plain crypto/tls. Both have
// finished their handshakes.
func tlsPair(t testing.TB, wrap func(net.Conn) net.Conn) (server, client *tls.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	cert, pool := testCert(t)
	server = tls.Server(wrap(a), &tls.Config{Certificates: []tls.Certificate{cert}})
	client = tls.Client(b, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// hookConn is an Underlay, as the proxy's accepted connections are.
type hookConn struct {
	net.Conn
	hook Hook
}

func (c *hookConn) SetHook(h Hook) { c.hook = h }

func (c *hookConn) Read(p []byte) (int, error) {
	if c.hook != nil {
		return c.hook.Read(p)
	}
	return c.Conn.Read(p)
}

func (c *hookConn) Write(p []byte) (int, error) {
	if c.hook != nil {
		return c.hook.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *hookConn) SyscallConn() (syscall.RawConn, error) { return c.Conn.(syscall.Conn).SyscallConn() }

func (c *hookConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }
