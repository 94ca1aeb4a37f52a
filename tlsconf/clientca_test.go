package tlsconf_test

import (
	"crypto/tls"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// TestClientCA guards tls.client_ca: with RequestClientCert (a route has
// client_cert) the handshake asks for a certificate, naming client_ca's
// roots, and verifies the one given; without it nothing is asked, so
// browsers are not prompted. A file without a certificate is client_ca's
// error.
func TestClientCA(t *testing.T) {
	t.Parallel()
	ca := testutil.IssueClient(t, "Device CA", nil)
	device := testutil.IssueClient(t, "device-1", ca)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]}), 0o600)
	serverCert, clientTLS := testutil.Cert(t)
	certFile, keyFile := testutil.WriteKeyPair(t, serverCert)

	for _, request := range []bool{true, false} {
		m, err := tlsconf.NewManager(tlsconf.Config{Cert: certFile, Key: keyFile, ClientCA: caFile, RequestClientCert: request}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		verified := make(chan int, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				verified <- -1
				return
			}
			defer c.Close()
			tc := c.(*tls.Conn)
			if tc.Handshake() != nil {
				verified <- -1
				return
			}
			verified <- len(tc.ConnectionState().VerifiedChains)
		}()
		asked := false
		cfg := clientTLS.Clone()
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = len(cri.AcceptableCAs) == 1 && strings.Contains(string(cri.AcceptableCAs[0]), "Device CA")
			return device, nil
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x")) // TLS 1.3: the server's verdict comes with the client's first flight
		got := <-verified
		c.Close()
		ln.Close()
		if asked != request || (request && got != 1) || (!request && got != 0) {
			t.Errorf("RequestClientCert %v: asked %v, verified chains %d", request, asked, got)
		}
	}
	_, err := tlsconf.Compile(tlsconf.Config{ClientCA: certFile + ".missing"})
	if err == nil || !strings.Contains(err.Error(), "client_ca: ") {
		t.Errorf("a missing client_ca: %v", err)
	}
}
