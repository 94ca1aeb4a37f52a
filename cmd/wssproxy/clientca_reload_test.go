package main

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestReloadRereadsClientCA guards that a reload reads tls.client_ca
// again even when its path is unchanged: a CA taken out of the file (a
// compromised one) stops verifying client certificates from then on.
func TestReloadRereadsClientCA(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	dir := t.TempDir()
	oldCA, newCA := testutil.IssueClient(t, "Old CA", nil), testutil.IssueClient(t, "New CA", nil)
	device := testutil.IssueClient(t, "device-1", oldCA)
	caFile, cfg := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.toml")
	writeCA := func(ca *tls.Certificate) {
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]}), 0o600)
	}
	writeCA(oldCA)
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[tls]\nclient_ca = %q\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/dev\"\nbackend = \"ws://127.0.0.1:8282\"\nclient_cert = \"require\"\n", caFile)), 0o600)
	r, logs, reg := newRunner(t, cfg)
	r.startWatch(r.certs.Load()) // as serve does: a reload with new TLS settings replaces it
	t.Cleanup(func() { r.stopWatch() })
	handshake := func() error {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", r.certs.Load().TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		res := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				res <- err
				return
			}
			defer c.Close()
			res <- c.(*tls.Conn).HandshakeContext(ctx)
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return device, nil }})
		if err == nil {
			c.Write([]byte("x")) // TLS 1.3: the server's verdict comes after the client's flight
			defer c.Close()
		}
		return <-res
	}
	if err := handshake(); err != nil {
		t.Fatalf("the old CA's device before the reload: %v", err)
	}
	writeCA(newCA)
	r.reload(ctx)
	if got := reloads(t, reg, "success"); got != 1 {
		t.Fatalf("reload: %v successes:\n%s", got, logs)
	}
	if err := handshake(); err == nil {
		t.Error("a device of the CA taken out of tls.client_ca still passes the TLS handshake after the reload")
	}
}
