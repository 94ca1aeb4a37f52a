// Package tlsconf owns wssproxy's certificates and TLS policy: loading
// certificate files, generating the self-signed default, and building the
// server's tls.Config. Package proxy never touches a key.
package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ServerConfig returns the TLS policy for the proxy's listener, serving cert.
//
// TLS 1.2 is the minimum (browsers and WeChat mini programs require at least
// that). Cipher suites and curves are left nil on purpose: Go's defaults are
// modern, include the X25519MLKEM768 hybrid key exchange, and setting them
// would freeze the list. ALPN offers h2 and http/1.1; WebSocket upgrades are
// served on HTTP/1.1 connections only, because extended CONNECT (RFC 8441) is
// not advertised, so browsers open an HTTP/1.1 connection for a WebSocket
// even when the page came over HTTP/2.
func ServerConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{*cert},
	}
}

// LoadKeyPair reads a PEM certificate chain (leaf first) and its private key,
// and checks that they belong together. Its errors say which file is at fault.
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if !containsBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	if !containsBlock(keyPEM, "PRIVATE KEY") {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("key %s does not match certificate %s", keyFile, certFile)
		}
		return nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// containsBlock reports whether data holds a PEM block whose type ends in
// typ ("PRIVATE KEY" matches "EC PRIVATE KEY" and "RSA PRIVATE KEY").
func containsBlock(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, typ) {
			return true
		}
	}
}

// Fingerprint is the SHA-256 of the leaf certificate, as colon-separated hex
// (the form browsers show), so a person can compare what they are offered
// with what the proxy serves.
func Fingerprint(cert *tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// Leaf returns the parsed leaf certificate.
func Leaf(cert *tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("tlsconf: empty certificate")
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// ExpiryWarning returns a warning when the leaf has expired or expires within
// 30 days of now, and "" otherwise.
func ExpiryWarning(cert *tls.Certificate, now time.Time) string {
	leaf, err := Leaf(cert)
	if err != nil {
		return ""
	}
	left := leaf.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return fmt.Sprintf("certificate expired %s ago (not after %s)", (-left).Round(time.Hour), leaf.NotAfter.Format(time.RFC3339))
	case left < 30*24*time.Hour:
		return fmt.Sprintf("certificate expires in %d days (not after %s)", int(left.Hours()/24), leaf.NotAfter.Format(time.RFC3339))
	}
	return ""
}
