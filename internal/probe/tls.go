package probe

// The tls step: the handshake, the certificate chain and what is wrong with
// it.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/internal/certpool"
)

// checkTLS performs the TLS handshake, reports the chain and why it does
// or does not verify, and whether TLS 1.2 is accepted.
func (p *prober) checkTLS(ctx context.Context) (*tls.Config, int) {
	roots, err := p.roots()
	if err != nil {
		return nil, p.fail(probeUsage, "-ca: "+err.Error())
	}
	start := time.Now()
	cfg := &tls.Config{ServerName: p.host, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}
	cs, err := p.handshake(ctx, cfg)
	if err != nil {
		p.step("tls", start, false, nil)
		if strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
			return nil, p.fail(probeTLS, fmt.Sprintf("%s speaks plain HTTP, not TLS: use ws:// for it, or put wssproxy in front", p.addr))
		}
		return nil, p.fail(probeTLS, fmt.Sprintf("TLS handshake with %s failed: %v", p.addr, err))
	}
	detail := map[string]string{
		"version": tls.VersionName(cs.Version),
		"cipher":  tls.CipherSuiteName(cs.CipherSuite),
		"alpn":    cs.NegotiatedProtocol,
	}
	var lines []string
	for i, c := range cs.PeerCertificates {
		lines = append(lines, certLine(i, c))
	}
	problem := verifyProblem(cs.PeerCertificates, p.host, roots)
	if problem != "" && !p.o.insecure {
		p.step("tls", start, false, detail, lines...)
		return nil, p.fail(probeCertificate, problem+" (-insecure to go on anyway)")
	}
	if problem != "" {
		// -insecure: the handshake worked; what it skipped is a warning.
		p.rep.Warnings = append(p.rep.Warnings, problem)
		lines = append(lines, "warning: "+problem+" (not verified: -insecure)")
	}
	p.step("tls", start, true, detail, lines...)

	// TLS 1.2: what WeChat mini programs and older clients need.
	start = time.Now()
	_, err = p.handshake(ctx, &tls.Config{ServerName: p.host, InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	p.step("tls1.2", start, err == nil, map[string]string{"accepted": fmt.Sprint(err == nil)})
	if err != nil {
		p.rep.Problem = "TLS 1.2 is refused: WeChat mini programs and older clients need it; allow it (wssproxy: min_version = \"1.2\")"
	}

	out := &tls.Config{ServerName: p.host, RootCAs: roots, NextProtos: []string{"http/1.1"}}
	if problem != "" {
		out.InsecureSkipVerify = true // -insecure: reported above
	}
	return out, probeOK
}

func (p *prober) roots() (*x509.CertPool, error) {
	if p.o.ca == "" {
		return x509.SystemCertPool()
	}
	pool, _, err := certpool.ReadFile(p.o.ca)
	return pool, err
}

func (p *prober) handshake(ctx context.Context, cfg *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: p.o.timeout}, Config: cfg}
	hctx, cancel := context.WithTimeout(ctx, p.o.timeout)
	defer cancel()
	c, err := d.DialContext(hctx, "tcp", p.addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// certLine describes one certificate of the chain: its name (the common
// name, or without one its DNS and IP names, as the CA/Browser Forum's
// rules let a leaf have), its issuer, names and expiry.
func certLine(i int, c *x509.Certificate) string {
	names := certNames(c)
	name := c.Subject.CommonName
	if name == "" {
		name = strings.Join(names, " ")
	}
	line := fmt.Sprintf("cert[%d] %s, issued by %s", i, cmp.Or(name, c.Subject.String(), "(no name)"),
		cmp.Or(c.Issuer.CommonName, c.Issuer.String(), "(no name)"))
	if len(names) > 0 {
		line += ", names " + strings.Join(names, " ")
	}
	return line + fmt.Sprintf(", expires %s (%d days)", c.NotAfter.Format("2006-01-02"), int(time.Until(c.NotAfter).Hours()/24))
}

func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// verifyProblem says, in one line a person can act on, why chain does not
// verify for host against roots, or "" when it does.
func verifyProblem(chain []*x509.Certificate, host string, roots *x509.CertPool) string {
	if len(chain) == 0 {
		return "the server sent no certificate"
	}
	leaf := chain[0]
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("certificate expired on %s: renew it (certbot renew, or let wssproxy's ACME do it)", leaf.NotAfter.Format("2006-01-02"))
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("certificate is not valid until %s: check this machine's clock and the server's", leaf.NotBefore.Format("2006-01-02"))
	case leaf.VerifyHostname(host) != nil:
		names := certNames(leaf)
		if len(names) == 0 {
			names = []string{leaf.Subject.CommonName}
		}
		return fmt.Sprintf("certificate is for %s, not %s: connect by a name it covers, or get one for %s", strings.Join(names, ", "), host, host)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	if err == nil {
		return ""
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		if leaf.Subject.String() == leaf.Issuer.String() {
			return "certificate is self-signed: browsers and WeChat refuse it; use one from a CA (wssproxy's [tls.acme])"
		}
		if len(chain) == 1 {
			return fmt.Sprintf("incomplete chain: the server sends only its own certificate, not the intermediate from %q; configure the full chain (fullchain.pem, not cert.pem)", leaf.Issuer.CommonName)
		}
		return fmt.Sprintf("certificate is issued by %q, which is not trusted here: a private CA? (-ca FILE to trust it)", leaf.Issuer.CommonName)
	}
	return "certificate does not verify: " + err.Error()
}
