// Package plaintls names the mistake behind a TLS client's most puzzling
// error: "tls: first record does not look like a TLS handshake" is what
// crypto/tls says when the server answered in plain text, which for a
// wss:// or https:// backend means it speaks ws:// or http://.
package plaintls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// Is reports whether err is a TLS client's handshake that got an answer
// that is not TLS (crypto/tls's RecordHeaderError, carrying the first
// five bytes it read).
func Is(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}

// HTTP reports whether the answer that is not TLS is plain HTTP: a server
// that reads the ClientHello as a malformed request and answers
// "HTTP/1.1 400 Bad Request".
func HTTP(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/"
}

// Explain adds to a backend's TLS handshake error what it means and what
// to write instead; other errors are returned as they are. url is the
// backend as configured (wss://127.0.0.1:8282).
func Explain(url string, err error) error {
	if !Is(err) {
		return err
	}
	what := "something that is not TLS"
	if HTTP(err) {
		what = "plain HTTP"
	}
	tlsScheme, plain, rest := "wss://", "ws://", url
	for _, p := range [][2]string{{"wss://", "ws://"}, {"https://", "http://"}} {
		if r, ok := strings.CutPrefix(url, p[0]); ok {
			tlsScheme, plain, rest = p[0], p[1], r
		}
	}
	return fmt.Errorf("%w: the backend answered %s: it speaks %s, not %s (write it as %s)", err, what, plain, tlsScheme, plain+rest)
}
