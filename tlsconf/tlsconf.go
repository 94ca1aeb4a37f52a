// Package tlsconf owns wssproxy's certificates and TLS policy: certificate
// files chosen by SNI and reloaded when they change, ACME certificates
// (names and IP addresses) ordered on golang.org/x/crypto/acme with the
// configured profile and renewed when the CA's renewal information (ARI,
// RFC 9773) says, the self-signed default, and the server's tls.Config.
// Package proxy never touches a key.
//
// The ACME files: issuer.go (account, autocert-compatible cache, the
// certificate of each host), order.go (one order: challenges, CSR, chain
// choice), jws.go (the new-order request x/crypto/acme cannot send:
// profile and replaces), ari.go (renewal information), renewal.go (the
// renewal loop, its logs and status), profile.go (the profile check
// against the CA's directory).
//
// The policy needs no configuration:
//   - TLS 1.2 minimum (browsers and WeChat mini programs require at least
//     that; min_version "1.3" may be required instead).
//   - TLS 1.2 suites: ECDHE with an AEAD cipher only (AES-128-GCM,
//     AES-256-GCM, ChaCha20-Poly1305; ECDSA and RSA certificates). Go's
//     default list would add ECDHE CBC-SHA1 suites, which scanners flag
//     (obsolete CBC, LUCKY13). TLS 1.3's suites are all AEAD and not
//     configurable.
//   - Key exchanges: X25519MLKEM768 (the post-quantum hybrid current
//     browsers and Go clients send first), X25519, P-256, P-384; no P-521.
//   - Session tickets on; ALPN h2 and http/1.1 (and acme-tls/1 with ACME).
//
// Both lists are fixed here, so what a later Go adds to its defaults is not
// offered until it is added here too. WebSocket upgrades are served on
// HTTP/1.1 connections only: extended CONNECT (RFC 8441) is not advertised,
// so browsers open an HTTP/1.1 connection for a WebSocket even when the page
// came over HTTP/2.
package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// keyFileError marks LoadKeyPair errors that are the key file's fault.
type keyFileError struct{ error }

func (e keyFileError) Unwrap() error { return e.error }

// loadKeyPair reads a PEM certificate chain (leaf first) and its private key,
// and checks that they belong together. Its errors say which file is at fault.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", unreadable(err))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, keyFileError{fmt.Errorf("read key: %w", unreadable(err))}
	}
	if !containsBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	if !containsBlock(keyPEM, "PRIVATE KEY") {
		return nil, keyFileError{fmt.Errorf("%s: no PEM PRIVATE KEY block", keyFile)}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("key %s does not match certificate %s", keyFile, certFile)
		}
		return nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// unreadable adds to a file's "permission denied" who this process is and
// the two ways to let it read the file. The common case is certbot's: its
// private keys are root's, mode 600, and wssproxy runs as another user
// (the image's 65532, systemd's DynamicUser).
func unreadable(err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fmt.Errorf("%w: wssproxy runs as %s, which may not read it; give it a copy it can read "+
		"(`install -m 640 -g %s privkey.pem fullchain.pem /etc/wssproxy/tls/`, in a certbot deploy hook so renewals are copied too), "+
		"or run wssproxy as a user that can (`docker run --user 0:0`, systemd's User=)",
		err, processUser(), processGroup())
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

// fingerprint is the SHA-256 of the leaf certificate, as colon-separated hex
// (the form browsers show), so a person can compare what they are offered
// with what the proxy serves.
func fingerprint(cert *tls.Certificate) string {
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

// leafOf returns the parsed leaf certificate.
func leafOf(cert *tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("tlsconf: empty certificate")
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// expiryWarning returns a warning when the leaf has expired or expires within
// 30 days of now, and "" otherwise.
func expiryWarning(cert *tls.Certificate, now time.Time) string {
	leaf, err := leafOf(cert)
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
