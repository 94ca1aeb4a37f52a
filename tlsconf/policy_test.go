package tlsconf_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// rsaCert makes a self-signed RSA-2048 certificate for localhost, for the
// ECDHE-RSA suites.
func rsaCert(t testing.TB) *tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestTLSPolicy guards the TLS policy with real handshakes from Go clients
// that offer one thing each: TLS 1.2 CBC suites (ECDHE and RSA key
// exchange, ECDSA and RSA certificates) and P-521 are refused; the AES-GCM
// and ChaCha20-Poly1305 suites and X25519, P-256 and P-384 work; a default
// client negotiates X25519MLKEM768.
func TestTLSPolicy(t *testing.T) {
	testutil.CheckLeaks(t)
	servers := map[string]string{} // certificate kind -> address
	for kind, cert := range map[string]*tls.Certificate{"ecdsa": nil, "rsa": rsaCert(t)} {
		cfg := tlsconf.Config{}
		if cert != nil {
			cfg.Cert, cfg.Key = testutil.WriteKeyPair(t, cert)
		}
		m, err := tlsconf.NewManager(cfg, nil) // nothing configured: self-signed ECDSA P-256
		if err != nil {
			t.Fatal(err)
		}
		servers[kind] = serveTLS(t, m.TLSConfig())
	}
	const v12, v13 = tls.VersionTLS12, tls.VersionTLS13
	for _, tc := range []struct {
		name      string
		cert      string
		max       uint16
		suites    []uint16
		curves    []tls.CurveID
		refused   bool
		wantSuite uint16 // 0: not checked
		wantCurve tls.CurveID
	}{
		{name: "ECDHE-ECDSA AES-128-CBC-SHA", cert: "ecdsa", max: v12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, refused: true},
		{name: "ECDHE-ECDSA AES-256-CBC-SHA", cert: "ecdsa", max: v12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, refused: true},
		{name: "ECDHE-RSA AES-128-CBC-SHA", cert: "rsa", max: v12, suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}, refused: true},
		{name: "ECDHE-RSA AES-256-CBC-SHA", cert: "rsa", max: v12, suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}, refused: true},
		{name: "RSA key exchange AES-128-GCM", cert: "rsa", max: v12, suites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, refused: true},
		{name: "RSA key exchange AES-128-CBC-SHA", cert: "rsa", max: v12, suites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, refused: true},
		{name: "ECDHE-ECDSA AES-128-GCM", cert: "ecdsa", max: v12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "ECDHE-ECDSA AES-256-GCM", cert: "ecdsa", max: v12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{name: "ECDHE-ECDSA ChaCha20-Poly1305", cert: "ecdsa", max: v12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "ECDHE-RSA AES-128-GCM", cert: "rsa", max: v12, suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{name: "ECDHE-RSA AES-256-GCM", cert: "rsa", max: v12, suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{name: "ECDHE-RSA ChaCha20-Poly1305", cert: "rsa", max: v12, suites: []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, wantSuite: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "TLS 1.2 P-521 only", cert: "ecdsa", max: v12, curves: []tls.CurveID{tls.CurveP521}, refused: true},
		{name: "TLS 1.3 P-521 only", cert: "ecdsa", max: v13, curves: []tls.CurveID{tls.CurveP521}, refused: true},
		{name: "TLS 1.3 X25519 only", cert: "ecdsa", max: v13, curves: []tls.CurveID{tls.X25519}, wantCurve: tls.X25519},
		{name: "TLS 1.3 P-256 only", cert: "ecdsa", max: v13, curves: []tls.CurveID{tls.CurveP256}, wantCurve: tls.CurveP256},
		{name: "TLS 1.3 P-384 only", cert: "ecdsa", max: v13, curves: []tls.CurveID{tls.CurveP384}, wantCurve: tls.CurveP384},
		{name: "TLS 1.2 P-384 only", cert: "rsa", max: v12, curves: []tls.CurveID{tls.CurveP384}, wantCurve: tls.CurveP384},
		{name: "TLS 1.1", cert: "ecdsa", max: tls.VersionTLS11, refused: true},
		{name: "default client", cert: "ecdsa", wantCurve: tls.X25519MLKEM768, wantSuite: tls.TLS_AES_128_GCM_SHA256},
		{name: "default client, RSA certificate", cert: "rsa", wantCurve: tls.X25519MLKEM768},
		{name: "default TLS 1.2 client", cert: "ecdsa", max: v12, wantCurve: tls.X25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", servers[tc.cert], &tls.Config{
				InsecureSkipVerify: true, // the policy is under test, not the certificate
				MinVersion:         tls.VersionTLS10,
				MaxVersion:         tc.max,
				CipherSuites:       tc.suites,
				CurvePreferences:   tc.curves,
			})
			if tc.refused {
				if err == nil {
					st := c.ConnectionState()
					c.Close()
					t.Fatalf("handshake succeeded: %s, %s, %v", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if tc.wantSuite != 0 && st.CipherSuite != tc.wantSuite {
				t.Errorf("suite %s, want %s", tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(tc.wantSuite))
			}
			if tc.wantCurve != 0 && st.CurveID != tc.wantCurve {
				t.Errorf("key exchange %v, want %v", st.CurveID, tc.wantCurve)
			}
		})
	}
}
