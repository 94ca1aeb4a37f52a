package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSelfSigned guards the default certificate: ECDSA P-256, the names
// and addresses asked for, valid now.
func TestSelfSigned(t *testing.T) {
	cert, err := SelfSigned([]string{"localhost", "127.0.0.1", "::1", "myhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("key %T", cert.PrivateKey)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "myhost"} {
		if err := cert.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if now := time.Now(); now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		t.Errorf("not valid now: %v–%v", cert.Leaf.NotBefore, cert.Leaf.NotAfter)
	}
}

// TestServerConfig guards the TLS policy's settings: 1.2 minimum, ECDHE
// AEAD suites only, the four key exchanges, h2 and http/1.1, and no
// acme-tls/1 without ACME (TestTLSPolicy shakes hands with it).
func TestServerConfig(t *testing.T) {
	m, err := NewManager(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := m.TLSConfig()
	if c.MinVersion != tls.VersionTLS12 || strings.Join(c.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("config: min %x alpn %v", c.MinVersion, c.NextProtos)
	}
	if len(c.CipherSuites) != 6 {
		t.Errorf("suites %v, want the 6 ECDHE AEAD suites", c.CipherSuites)
	}
	for _, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s offered", name)
		}
	}
	if got := fmt.Sprint(c.CurvePreferences); got != fmt.Sprint([]tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}) {
		t.Errorf("curves %s", got)
	}
}

// TestFingerprintAndExpiry guards the fingerprint's form and the expiry
// warnings.
func TestFingerprintAndExpiry(t *testing.T) {
	cert, _ := SelfSigned([]string{"localhost"}, 10*24*time.Hour)
	if fp := Fingerprint(cert); !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Errorf("fingerprint %q", fp)
	}
	now := time.Now()
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now, "certificate expires in 9 days"},
		{now.Add(-30 * 24 * time.Hour), ""},
		{now.Add(11 * 24 * time.Hour), "certificate expired"},
	} {
		if got := ExpiryWarning(cert, tc.at); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("at %v: %q, want %q", tc.at, got, tc.want)
		}
	}
}
