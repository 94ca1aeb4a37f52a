package proxy

import (
	"net"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"
)

// route is a Route compiled for serving (compile.go makes it): matched by
// the router, used by the tunnel and the plain-HTTP proxy.
type route struct {
	name       string // "route[1] /wss", for logs
	prefix     string
	exact      bool
	host       string // exact host, or "" with wildcard or any
	hostSuffix string // ".example.com" for "*.example.com"
	stripPath  bool   // replace prefix with backendPath

	pool        *pool // nil for static and Handler routes
	backendPath string
	metrics     *routeMetrics // nil without metrics
	open        *atomic.Int64 // tunnels open now on routes of this name, for the status page

	setHeaders       http.Header
	removeHeaders    []string
	handshakeTimeout time.Duration

	pingInterval        time.Duration // 0: off
	pingTimeout         time.Duration
	backendPingInterval time.Duration
	sendTimeout         time.Duration
	idleTimeout         time.Duration
	maxLifetime         time.Duration
	maxMessageSize      int64
	limits              *rateSpec // message-rate limits (ratelimit.go); nil: none

	origins       []originPattern
	requireOrigin bool
	forwarded     bool
	underscores   bool      // underscores_in_headers: keep header names with "_"
	sendProxy     byte      // PROXY protocol version to backends, 0: none
	auth          *authPlan // nil: anyone may use the route (auth.go)
	identity      []string  // every route's auth's identity headers: the client's are removed

	http http.Handler // plain HTTP: reverse proxy, files or Handler
}

// checkOrigin returns why the route refuses a handshake's Origin, or "".
func (rt *route) checkOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	switch {
	case origin == "" && rt.requireOrigin:
		return "Origin header required"
	case origin == "" || len(rt.origins) == 0:
		return ""
	case !originAllowed(rt.origins, origin):
		return "Origin " + origin + " not allowed"
	}
	return ""
}

// hostRank orders how specifically a route names the request's host:
// an exact host beats a wildcard, a wildcard beats any host. -1 means the
// route does not apply to host.
func (rt *route) hostRank(host string) int {
	switch {
	case rt.host != "":
		if rt.host == host {
			return 1 << 20
		}
		return -1
	case rt.hostSuffix != "":
		label, ok := strings.CutSuffix(host, rt.hostSuffix)
		if ok && label != "" && !strings.Contains(label, ".") {
			return len(rt.hostSuffix) // a longer suffix is more specific
		}
		return -1
	}
	return 0
}

// matchPath reports whether p falls under the route's path: exactly, or as
// a prefix at a segment boundary ("/wss" matches "/wss/x" but not "/wssx").
func (rt *route) matchPath(p string) bool {
	if rt.exact || p == rt.prefix {
		return p == rt.prefix
	}
	if strings.HasSuffix(rt.prefix, "/") {
		return strings.HasPrefix(p, rt.prefix)
	}
	return strings.HasPrefix(p, rt.prefix) && p[len(rt.prefix)] == '/'
}

// targetPath is the path the backend receives for the (clean) request path
// p: unchanged, or with the matched prefix replaced by the backend's path
// (empty for strip_prefix).
func (rt *route) targetPath(p string) string {
	if !rt.stripPath {
		return p
	}
	rest := strings.TrimPrefix(p, rt.prefix)
	if rest != "" && rest[0] != '/' && strings.HasSuffix(rt.prefix, "/") {
		rest = "/" + rest // the prefix's slash was consumed
	}
	base := rt.backendPath
	if strings.HasSuffix(base, "/") && strings.HasPrefix(rest, "/") {
		base = base[:len(base)-1]
	}
	if out := base + rest; out != "" {
		return out
	}
	return "/"
}

// router picks the route for a request.
type router struct {
	routes []*route
	// authSlash: some route with auth has a path ending in "/", whose
	// path without the slash ServeHTTP redirects to it (handler.go).
	authSlash bool
}

// match returns the most specific route for host and the clean path p, or
// nil. Specificity: host (exact, then longest wildcard, then any), then an
// exact path, then the longest prefix.
func (rr *router) match(host, p string) *route {
	var best *route
	bestRank := -1
	for _, rt := range rr.routes {
		hr := rt.hostRank(host)
		if hr < 0 || !rt.matchPath(p) {
			continue
		}
		// Paths are at most a few KiB, so this packs into one int.
		rank := hr<<20 | len(rt.prefix)<<1
		if rt.exact {
			rank |= 1
		}
		if rank > bestRank {
			best, bestRank = rt, rank
		}
	}
	return best
}

// requestHost is r's host name, lower-cased, without port or trailing dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// cleanPath resolves dot segments and repeated slashes, keeping a trailing
// slash. Routing and forwarding use the clean path so that "/wss/../admin"
// can never reach a backend through the /wss route.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
