package proxy

import (
	"net/http"
	"strings"
)

// hopByHop are the connection-specific headers of RFC 9110 §7.6.1 (plus the
// obsolete ones proxies still see). They describe one connection, never the
// end-to-end request, so a proxy removes them, along with any header the
// Connection header names.
var hopByHop = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

func isHopByHop(canonical string) bool {
	for _, h := range hopByHop {
		if h == canonical {
			return true
		}
	}
	return false
}

// forwarding are the headers by which a proxy tells a backend who the client
// is. A client can write them too, so incoming values are never trusted:
// they are removed and the proxy writes its own.
var forwarding = []string{
	"X-Real-Ip",
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Forwarded-Port",
	"Forwarded",
	certSubjectHeader, certFingerprintHeader, certVerifiedHeader, // auth, authcert.go
}

// removeHopByHop deletes hop-by-hop headers from h, including those listed
// in its Connection header.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// isForwarding reports whether canonical is one of the forwarding headers
// the proxy always writes itself.
func isForwarding(canonical string) bool {
	for _, h := range forwarding {
		if h == canonical {
			return true
		}
	}
	return false
}

// forwardHeaders rewrites h, a copy of the client's headers bound for the
// backend: header names with an underscore are dropped (unless the route
// keeps them), incoming forwarding headers and the identity headers any
// route's auth sets (route.identity) are dropped, the proxy's own are
// set from the client as withClient found it (the TCP peer unless a trusted
// proxy says otherwise), then the route's remove_headers and set_headers.
func (rt *route) forwardHeaders(h http.Header, r *http.Request) {
	if !rt.underscores {
		dropUnderscored(h)
	}
	for _, name := range forwarding {
		h.Del(name)
	}
	for _, name := range rt.identity { // canonical (auth.go)
		delete(h, name)
	}
	client := clientOf(r)
	if client.realIPHeader != "" {
		// A single-address real_ip_header (CF-Connecting-IP, True-Client-IP)
		// is as forgeable as X-Real-IP: a backend reading it gets the
		// address the proxy believed, or nothing when the peer is not
		// trusted to say.
		h.Del(client.realIPHeader)
		if client.trusted {
			h.Set(client.realIPHeader, client.ip)
		}
	}
	h.Set("X-Real-Ip", client.ip)
	h.Set("X-Forwarded-For", client.xff)
	if rt.forwarded {
		h.Set("Forwarded", forwardedHeader(r, client.ip))
	}
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if r.Host != "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	for _, name := range rt.removeHeaders {
		h.Del(name)
	}
	for name, v := range rt.setHeaders {
		h[name] = v
	}
	rt.applyAuth(h, r)
}

// dropUnderscored deletes every header whose name contains "_", as nginx
// does by default (underscores_in_headers off). CGI-style backends (PHP's
// $_SERVER, Workerman, Python's WSGI environ) fold "-" and "_" into one, so a
// client's "X_Real_IP" would otherwise arrive beside the proxy's "X-Real-IP"
// and, read after it, win. net/http keeps such names apart from their
// dashed forms ("X_Real_IP" is canonicalised to "X_real_ip"), so deleting
// the canonical forwarding names alone does not catch them.
func dropUnderscored(h http.Header) {
	for name := range h {
		if strings.IndexByte(name, '_') >= 0 {
			delete(h, name)
		}
	}
}

// stsHeader is HSTS's response header (RFC 6797).
const stsHeader = "Strict-Transport-Security"

// setHSTS puts the configured Strict-Transport-Security header on the
// response to r, when r came over TLS: a host must not send it over plain
// HTTP (RFC 6797 §7.2), and browsers ignore it there.
func (s *Server) setHSTS(w http.ResponseWriter, r *http.Request) {
	if v := s.state.Load().cfg.HSTS; v != "" && r.TLS != nil {
		w.Header().Set(stsHeader, v)
	}
}

// hasToken reports whether a comma-separated header contains token,
// compared case-insensitively (RFC 9110 §5.6.1).
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
