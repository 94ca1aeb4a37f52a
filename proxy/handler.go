package proxy

// The way of a request once net/http has read it: routing, and the
// proxy's own refusals.

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// ServeHTTP routes a request: WebSocket handshakes to the tunnel, anything
// else to the route's plain HTTP handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.checkFraming(w, r) {
		return
	}
	if r.ProtoMajor == 2 {
		if c := s.h2Enter(r); c != nil {
			defer c.h2Leave()
		}
	}
	s.setHSTS(w, r)
	if herr := checkH2Request(r); herr != nil {
		s.refuse(w, s.state.Load().withClient(r), nil, herr.status, "bad-handshake", herr.reason, nil)
		return
	}
	if r.Method == http.MethodConnect && !(s.h2WebSockets && isH2WebSocket(r)) {
		r = s.state.Load().withClient(r)
		// Not a forward proxy. Extended CONNECT (RFC 8441) is routed below.
		s.refuse(w, r, nil, http.StatusMethodNotAllowed, "method", "CONNECT is not served", nil)
		return
	}
	st := s.state.Load()
	r = st.withClient(r)
	p := cleanPath(r.URL.Path)
	rt := st.router.match(requestHost(r), p)
	if rt == nil {
		s.refuse(w, r, nil, http.StatusNotFound, "no-route", "no route for this path", nil)
		return
	}
	if st.router.authSlash && !strings.HasSuffix(p, "/") {
		// "/admin" on a route "/admin/" with auth, which another route
		// would serve without it: as nginx does for such a location, 301
		// to the slash, so that the auth applies (route.go).
		if alt := st.router.match(requestHost(r), p+"/"); rt.prefix != p && alt != nil && alt != rt && alt.auth != nil && alt.prefix == p+"/" && !alt.exact {
			u := p + "/"
			if r.URL.RawQuery != "" {
				u += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, u, http.StatusMovedPermanently)
			return
		}
	}
	if p != r.URL.Path {
		// Forward the clean path, so dot segments never reach a backend.
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = p, ""
		r = r2
	}
	if isWebSocket(r) || r.Method == http.MethodConnect {
		s.serveWebSocket(w, r, st, rt)
		return
	}
	s.servePlain(w, r, rt)
}

// Error responses made by the proxy itself carry this header, so a client
// (and wssproxy probe) can tell them from a backend's answer.
const errorHeader = "X-Wssproxy-Error"

// refuse answers with the proxy's own error status and logs one line.
// The client sees the status and public; detail (which may name backend
// addresses) goes only to the log.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rt *route, status int, kind, public string, detail error) {
	attrs := []any{"status", status, "refused", kind, "reason", public, "client_ip", clientIP(r), "host", r.Host, "path", r.URL.Path}
	if rt != nil {
		attrs = append(attrs, "route", rt.name, "backend", rt.backendString())
	}
	if detail != nil {
		attrs = append(attrs, "error", detail.Error())
	}
	level := slog.LevelInfo
	if status == http.StatusBadGateway || status == http.StatusGatewayTimeout {
		level = slog.LevelWarn
	}
	if m := s.metrics.Load(); m != nil { // before the log line: what reads it finds it counted
		m.refused.WithLabelValues(kind).Inc()
	}
	if l := s.fdLogs[kind]; l != nil {
		// The descriptor budget's refusals come by the thousand: a line a
		// second (fdbudget.go).
		l.note(clientIP(r))
	} else {
		s.log.Log(r.Context(), level, "request refused", attrs...)
	}
	h := w.Header()
	h.Set(errorHeader, kind)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusUpgradeRequired {
		h.Set("Sec-WebSocket-Version", "13")
	}
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status)+": "+public+"\n")
}

func (rt *route) backendString() string {
	if rt.pool == nil {
		return ""
	}
	return rt.pool.String()
}
