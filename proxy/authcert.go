package proxy

// client_cert: the identity of a client certificate that the TLS
// listener verified against tls.client_ca. The listener asks for one in
// its handshake (tls.VerifyClientCertIfGiven) when any route has
// client_cert; a certificate given that does not verify fails the TLS
// handshake there, so what reaches a route is verified or absent.

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// The headers a backend gets a client certificate's identity in. The
// proxy writes them; a client's own are removed on every route
// (forwarding, headers.go).
const (
	certSubjectHeader     = "X-Client-Cert-Subject"
	certFingerprintHeader = "X-Client-Cert-Fingerprint"
	certVerifiedHeader    = "X-Client-Cert-Verified"
)

// clientCertHeaders sets h's client certificate headers for r: its
// subject (RFC 2253), the SHA-256 of its DER in hex, and "SUCCESS"; or
// "NONE" alone without a verified certificate (false).
func clientCertHeaders(r *http.Request, h http.Header) (subject string, ok bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		h.Set(certVerifiedHeader, "NONE")
		return "", false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	sum := sha256.Sum256(leaf.Raw)
	subject = leaf.Subject.String()
	h.Set(certSubjectHeader, subject)
	h.Set(certFingerprintHeader, hex.EncodeToString(sum[:]))
	h.Set(certVerifiedHeader, "SUCCESS")
	return subject, true
}

// WantsClientCerts reports whether any route of c has client_cert: the
// TLS listener then asks clients for a certificate in its handshake.
func (c *Compiled) WantsClientCerts() bool {
	for _, p := range c.routes {
		if p.auth != nil && p.auth.cert != 0 {
			return true
		}
	}
	return false
}
