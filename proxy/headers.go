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

// forwardHeaders rewrites h, a copy of the client's headers bound for the
// backend: incoming forwarding headers are dropped, the proxy's own are set
// from the client as withClient found it (the TCP peer unless a trusted
// proxy says otherwise), then the route's remove_headers and set_headers.
func (rt *route) forwardHeaders(h http.Header, r *http.Request) {
	for _, name := range forwarding {
		h.Del(name)
	}
	client := clientOf(r)
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
