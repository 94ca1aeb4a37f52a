package proxy

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/wssproxy/wssproxy/internal/urlport"
)

// originPattern is one allowed_origins entry: a scheme, a host or
// "*.domain" (any subdomain, at any depth), and a port (the scheme's
// default when not written).
type originPattern struct {
	scheme, host, port string
	wildcard           bool // host is ".domain"
}

func parseOrigin(s string) (originPattern, error) {
	if s == "null" {
		return originPattern{scheme: "null"}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return originPattern{}, fmt.Errorf(`%q is not an origin: write scheme://host[:port], like "https://example.com" or "https://*.example.com"`, s)
	}
	p := originPattern{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if p.port == "" {
		p.port = urlport.Default(p.scheme)
	}
	if rest, ok := strings.CutPrefix(p.host, "*."); ok {
		p.host, p.wildcard = "."+rest, true
	}
	if p.host == "" || strings.Contains(p.host[1:], "*") {
		return originPattern{}, fmt.Errorf("%q: a wildcard may only be the first label (*.example.com)", s)
	}
	return p, nil
}

// originAllowed reports whether an Origin header value matches one of
// patterns. Browsers always send Origin with a WebSocket handshake; a page
// on another site cannot forge it, which is what stops cross-site
// WebSocket hijacking (a hostile page riding the user's cookies).
func originAllowed(patterns []originPattern, origin string) bool {
	o, err := parseOrigin(origin)
	if err != nil || o.wildcard {
		return false
	}
	for _, p := range patterns {
		switch {
		case p.scheme != o.scheme || p.port != o.port:
		case p.wildcard && strings.HasSuffix(o.host, p.host):
			return true
		case p.host == o.host:
			return true
		}
	}
	return false
}
