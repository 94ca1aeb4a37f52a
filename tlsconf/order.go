package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/acme"
)

// Challenge types, tried in this order: TLS-ALPN-01 needs only the TLS
// port; HTTP-01 needs the port-80 listener.
var challengeTypes = []string{"tls-alpn-01", "http-01"}

// obtain orders a certificate for host (a name or an IP address) and
// returns it, stored in the cache. replaces, when not "", is the ARI
// certificate ID of the certificate it replaces; a CA that answers the
// order with a problem (already replaced, unknown) gets it again without. Each
// challenge type is tried in turn, on a new order, until one succeeds.
func (i *acmeIssuer) obtain(ctx context.Context, host, replaces string) (*tls.Certificate, error) {
	if err := i.register(ctx); err != nil {
		return nil, err
	}
	ids := acme.DomainIDs(host)
	if net.ParseIP(host) != nil {
		ids = acme.IPIDs(host)
	}
	var errs []error
	for _, typ := range challengeTypes {
		o, err := newOrder(ctx, i.client, ids, i.profile, replaces)
		if err != nil && replaces != "" {
			var p *acme.Error
			if !errors.As(err, &p) {
				return nil, err // no answer: the next attempt sends replaces again
			}
			// alreadyReplaced, or a certificate the CA cannot find (Pebble
			// answers 500 for that): order as new.
			i.log.Info("ACME: the CA refused the replacement order; ordering without replaces", "host", host, "problem", err)
			replaces = ""
			o, err = newOrder(ctx, i.client, ids, i.profile, "")
		}
		if err != nil {
			return nil, err
		}
		if err = i.authorize(ctx, o, typ); err == nil {
			return i.finish(ctx, host, o)
		}
		errs = append(errs, fmt.Errorf("%s: %w", typ, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// authorize fulfils every pending authorization of o with a challenge of
// type typ and waits until the order is ready.
func (i *acmeIssuer) authorize(ctx context.Context, o *acme.Order, typ string) error {
	for _, u := range o.AuthzURLs {
		z, err := i.client.GetAuthorization(ctx, u)
		if err != nil {
			return err
		}
		if z.Status == acme.StatusValid {
			continue
		}
		if z.Status != acme.StatusPending {
			return fmt.Errorf("authorization for %s is %s", z.Identifier.Value, z.Status)
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == typ {
				chal = c
			}
		}
		if chal == nil {
			return fmt.Errorf("the CA offers no %s challenge for %s", typ, z.Identifier.Value)
		}
		cleanup, err := i.present(chal, z.Identifier.Value)
		if err != nil {
			return err
		}
		_, err = i.client.Accept(ctx, chal)
		if err == nil {
			_, err = i.client.WaitAuthorization(ctx, z.URI)
		}
		cleanup()
		if err != nil {
			return err
		}
	}
	ready, err := i.client.WaitOrder(ctx, o.URI)
	if err == nil {
		*o = *ready
	}
	return err
}

// present makes the answer to chal available to the CA's validator until
// cleanup.
func (i *acmeIssuer) present(chal *acme.Challenge, identifier string) (cleanup func(), err error) {
	i.chMu.Lock()
	defer i.chMu.Unlock()
	switch chal.Type {
	case "tls-alpn-01":
		cert, err := i.client.TLSALPN01ChallengeCert(chal.Token, identifier)
		if err != nil {
			return nil, err
		}
		name := alpnName(identifier)
		i.alpn[name] = &cert
		return func() { i.chMu.Lock(); delete(i.alpn, name); i.chMu.Unlock() }, nil
	case "http-01":
		ka, err := i.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, err
		}
		i.tokens[chal.Token] = ka
		return func() { i.chMu.Lock(); delete(i.tokens, chal.Token); i.chMu.Unlock() }, nil
	}
	return nil, fmt.Errorf("tlsconf: challenge type %s", chal.Type)
}

// finish sends the CSR for a ready order, downloads the chain (the
// preferred one when asked), checks it and caches it.
func (i *acmeIssuer) finish(ctx context.Context, host string, o *acme.Order) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	der, certURL, err := i.client.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return nil, err
	}
	if i.chain != "" {
		der = i.preferredChain(ctx, host, der, certURL)
	}
	cert := &tls.Certificate{Certificate: der, PrivateKey: key}
	if cert.Leaf, err = x509.ParseCertificate(der[0]); err != nil {
		return nil, err
	}
	if err := cert.Leaf.VerifyHostname(host); err != nil {
		return nil, fmt.Errorf("the CA issued a certificate that does not name %s: %w", host, err)
	}
	if err := i.store(ctx, host, cert); err != nil {
		i.log.Warn("ACME: certificate not cached; a restart will order again", "host", host, "error", err)
	}
	return cert, nil
}

// preferredChain returns the chain, of the default and the alternates
// the CA lists (RFC 8555 §7.4.2), whose root has the preferred common
// name; the default when none has.
func (i *acmeIssuer) preferredChain(ctx context.Context, host string, der [][]byte, certURL string) [][]byte {
	if chainRoot(der) == i.chain {
		return der
	}
	alts, err := i.client.ListCertAlternates(ctx, certURL)
	if err != nil {
		i.log.Warn("ACME: alternate chains not listed; serving the default chain", "host", host, "error", err)
		return der
	}
	var seen []string
	for _, u := range alts {
		alt, err := i.client.FetchCert(ctx, u, true)
		if err != nil {
			i.log.Warn("ACME: alternate chain not fetched", "host", host, "url", u, "error", err)
			continue
		}
		root := chainRoot(alt)
		if root == i.chain {
			return alt
		}
		seen = append(seen, root)
	}
	i.log.Warn("ACME: no chain ends at the preferred root; serving the default chain", "host", host,
		"preferred_chain", i.chain, "default_root", chainRoot(der), "alternate_roots", strings.Join(seen, ", "))
	return der
}

// chainRoot is the common name of the root a chain leads to: the
// issuer of its last certificate (CAs send chains without the root).
func chainRoot(der [][]byte) string {
	if len(der) == 0 {
		return ""
	}
	top, err := x509.ParseCertificate(der[len(der)-1])
	if err != nil {
		return ""
	}
	return top.Issuer.CommonName
}

// reverseName is the reverse-DNS name of ip without the final dot, as a
// TLS-ALPN-01 validator sends it in SNI for an IP identifier (RFC 8738 §6).
func reverseName(ip net.IP) (string, error) {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", v4[3], v4[2], v4[1], v4[0]), nil
	}
	v6 := ip.To16()
	if v6 == nil {
		return "", fmt.Errorf("tlsconf: %v is not an IP address", ip)
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for j := len(v6) - 1; j >= 0; j-- {
		b.WriteByte(hex[v6[j]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v6[j]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa")
	return b.String(), nil
}
