package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestClientCert guards client_cert: the listener asks for a certificate
// (VerifyClientCertIfGiven, as wssproxy's tlsconf sets it up); "require"
// refuses a handshake without one with 403; a verified one's subject,
// SHA-256 fingerprint and "SUCCESS" reach the backend, over HTTP/1.1 and
// HTTP/2; the X-Client-Cert-* a client writes never do, on any route; a
// certificate of another CA fails the TLS handshake.
func TestClientCert(t *testing.T) {
	t.Parallel()
	ca, other := testutil.IssueClient(t, "Device CA", nil), testutil.IssueClient(t, "Other CA", nil)
	device := testutil.IssueClient(t, "device-1", ca)
	stranger := testutil.IssueClient(t, "device-1", other)
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{
		{Path: "/dev", Backend: backend, ClientCert: "require"},
		{Path: "/opt", Backend: backend, ClientCert: "optional"},
		{Path: "/open", Backend: backend},
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	serverCert, clientTLS := testutil.Cert(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{*serverCert}, NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	ln := testutil.Listen(t)
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, serverTLS) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	ctx := testutil.Context(t, 20*time.Second)

	client := func(cert *tls.Certificate, h2 bool) *http.Client {
		c := clientTLS.Clone()
		if cert != nil {
			// Sent whatever CAs the server names (Go's client would keep
			// back a certificate of a CA not named).
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		tr := &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: h2}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	forged := http.Header{"X-Client-Cert-Subject": {"CN=admin"}, "X-Client-Cert-Verified": {"SUCCESS"}, "X-Client-Cert-Fingerprint": {"00"}}
	dial := func(hc *http.Client, path string) (*http.Response, error) {
		c, resp, err := websocket.Dial(ctx, "wss://"+ln.Addr().String()+path, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: forged.Clone()})
		if err == nil {
			roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
			c.CloseNow()
		}
		return resp, err
	}
	sum := sha256.Sum256(device.Leaf.Raw)
	want := map[string]string{"X-Client-Cert-Subject": "CN=device-1,O=Devices", "X-Client-Cert-Fingerprint": hex.EncodeToString(sum[:]),
		"X-Client-Cert-Verified": "SUCCESS"}
	for _, path := range []string{"/dev", "/opt"} {
		if _, err := dial(client(device, false), path); err != nil {
			t.Fatalf("%s with a certificate: %v", path, err)
		}
		got := rec.last(t)
		for k, v := range want {
			if g := got.Header.Values(k); len(g) != 1 || g[0] != v {
				t.Errorf("%s: backend got %s %q, want %q", path, k, g, v)
			}
		}
	}
	// Over HTTP/2 (extended CONNECT) the stream's connection has the certificate.
	h2req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ln.Addr().String()+"/dev/page", nil)
	resp, err := client(device, true).Do(h2req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || rec.last(t).Header.Get("X-Client-Cert-Subject") != want["X-Client-Cert-Subject"] {
		t.Errorf("plain request over %s: %d, subject %q", resp.Proto, resp.StatusCode, rec.last(t).Header.Get("X-Client-Cert-Subject"))
	}

	resp, err = dial(client(nil, false), "/dev")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Wssproxy-Error") != "auth-cert" {
		t.Errorf("/dev without a certificate: %v %+v", err, resp)
	}
	if _, err := dial(client(nil, false), "/opt"); err != nil {
		t.Fatalf("/opt without a certificate: %v", err)
	}
	if got := rec.last(t).Header; got.Get("X-Client-Cert-Verified") != "NONE" || got.Get("X-Client-Cert-Subject") != "" {
		t.Errorf("/opt without a certificate: backend got %v", got)
	}
	if _, err := dial(client(nil, false), "/open"); err != nil {
		t.Fatalf("/open: %v", err)
	}
	for k := range forged {
		if v := rec.last(t).Header.Get(k); v != "" {
			t.Errorf("/open: the client's %s %q reached the backend", k, v)
		}
	}
	if _, err := dial(client(stranger, false), "/open"); err == nil {
		t.Error("a certificate of another CA passed the TLS handshake")
	}
}
