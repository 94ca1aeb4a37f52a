package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// ErrCAUnreachable marks a CheckCA that could not read the CA's
// directory: the configuration may be right, the check was not made.
var ErrCAUnreachable = errors.New("tlsconf: ACME directory not read")

// CheckCA reads the CA's directory and checks acme.profile against the
// profiles it offers; without ACME or a profile it does nothing. A
// profile the CA does not offer is a *FieldError (acme.profile) that
// names the ones it does; a directory that cannot be read is an error
// wrapping ErrCAUnreachable. wssproxy -t and startup call it.
func (c *Compiled) CheckCA(ctx context.Context) error {
	a := &c.cfg.ACME
	if !a.enabled() || a.Profile == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	client := &acme.Client{DirectoryURL: a.directory(), HTTPClient: caClient(c.acmeRoots, nil)}
	dir, err := client.Discover(ctx)
	if err != nil {
		return fmt.Errorf("%w from %s: %v", ErrCAUnreachable, a.directory(), err)
	}
	if _, ok := dir.Profiles[acme.ProfileName(a.Profile)]; ok {
		return nil
	}
	if len(dir.Profiles) == 0 {
		return fieldErr("acme.profile", "the CA at %s offers no profiles; remove profile to take its default", a.directory())
	}
	var names []string
	for n := range dir.Profiles {
		names = append(names, `"`+string(n)+`"`)
	}
	slices.Sort(names)
	return fieldErr("acme.profile", "%q is not offered by the CA at %s; it offers %s", a.Profile, a.directory(), strings.Join(names, ", "))
}

// caClient is an HTTP client for the CA's API, trusting roots (nil: the
// system's); wrap, if not nil, wraps its transport.
func caClient(roots *x509.CertPool, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		base.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	var rt http.RoundTripper = base
	if wrap != nil {
		rt = wrap(base)
	}
	return &http.Client{Transport: rt, Timeout: time.Minute}
}
