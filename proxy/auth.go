package proxy

// Who may use a route (issue 26): client certificates, basic auth, a JWT
// and an auth service, each a route's keys, checked in that order (the
// cheapest first, the auth service only for what passed the rest) for
// WebSocket handshakes, over HTTP/1.1 and HTTP/2, and plain requests
// alike, after the Origin check and the limits and before any backend is
// dialed. A refusal is one log line and one count of
// wssproxy_requests_refused_total{kind="auth-..."}; what passed goes on
// the request's context as an authResult, which the backend's headers
// (forwardHeaders), the access log and the tunnel (a token's expiry)
// read. It is per handshake: nothing here runs per message.

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/internal/htpasswd"
)

// authPlan is a route's auth keys, compiled.
type authPlan struct {
	cert    byte // certOptional or certRequire; 0: no client_cert
	basic   *htpasswd.File
	jwt     *jwtPlan
	forward *forwardAuth
	// strip are the identity headers this route's auth sets (claims and
	// forward_auth_headers): a client's own copies never reach the backend.
	strip []string
}

const (
	certOptional = 1 + iota
	certRequire
)

// authResult is what a request's auth found, on its context.
type authResult struct {
	methods  string      // "jwt", "forward", "cert", "basic", joined with "+"
	subject  string      // who: the token's sub, the user, the certificate's subject…
	set      http.Header // on the request to the backend
	protocol []string    // Sec-WebSocket-Protocol without a token; nil: as it came
	expiry   time.Time   // the token's exp when the tunnel closes at it; zero: never
}

type authKey struct{}

// authOf is the auth result of r, or nil.
func authOf(r *http.Request) *authResult {
	res, _ := r.Context().Value(authKey{}).(*authResult)
	return res
}

func (res *authResult) passed(method, subject string) {
	if res.methods != "" {
		res.methods += "+"
	}
	res.methods += method
	if subject != "" {
		res.subject = subject // the last (the most specific) wins
	}
}

// compileAuth checks a route's auth keys (key is "route[N]"); roots
// verify https auth services and key sets (backend_ca, or the system's).
func compileAuth(key string, r *Route, roots *x509.CertPool) (*authPlan, []error) {
	var errs []error
	a := &authPlan{}
	switch r.ClientCert {
	case "":
	case "optional":
		a.cert = certOptional
	case "require":
		a.cert = certRequire
	default:
		errs = append(errs, fieldErr(key+".client_cert", `must be "require" or "optional", got %q`, r.ClientCert))
	}
	if r.BasicAuth != "" {
		h, err := htpasswd.Read(r.BasicAuth)
		if err != nil {
			errs = append(errs, fielderr.Wrap(key+".basic_auth", err))
		}
		a.basic = h
	}
	if r.JWT != nil {
		p, jerrs := compileJWT(key+".jwt", r.JWT, roots)
		errs = append(errs, jerrs...)
		a.jwt = p
		for _, c := range p.claims {
			a.strip = append(a.strip, c.header)
		}
	}
	errs = append(errs, checkDuration(key+".forward_auth_timeout", r.ForwardAuthTimeout))
	if r.ForwardAuth != "" {
		f, ferrs := compileForwardAuth(key, r, roots)
		errs = append(errs, ferrs...)
		a.forward = f
		if f != nil {
			a.strip = append(a.strip, f.headers...)
		}
	} else if len(r.ForwardAuthHeaders) > 0 {
		errs = append(errs, fieldErr(key+".forward_auth_headers", "has no effect without forward_auth"))
	}
	errs = compactErrs(errs)
	if a.cert == 0 && a.basic == nil && a.jwt == nil && a.forward == nil {
		return nil, errs
	}
	return a, errs
}

// bind is a for one state of s (ctx is the state's): a copy whose auth
// service has a connection pool of its own (authforward.go).
func (a *authPlan) bind(s *Server, ctx context.Context) *authPlan {
	if a == nil || a.forward == nil {
		return a
	}
	b := *a
	b.forward = a.forward.bind(s, ctx)
	return &b
}

func compactErrs(errs []error) []error {
	out := errs[:0]
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// authorize runs rt's auth on r. It answers the client itself when r does
// not pass (false); else it returns r with its authResult.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rt *route) (*http.Request, bool) {
	a := rt.auth
	if a == nil {
		return r, true
	}
	res := &authResult{set: make(http.Header)}
	if a.cert != 0 {
		subject, ok := clientCertHeaders(r, res.set)
		if !ok && a.cert == certRequire {
			s.refuse(w, r, rt, http.StatusForbidden, "auth-cert", "a client certificate is required", nil)
			return nil, false
		}
		if ok {
			res.passed("cert", subject)
		}
	}
	if a.basic != nil {
		user, ok := a.basic.Check(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="wssproxy", charset="UTF-8"`)
			s.refuse(w, r, rt, http.StatusUnauthorized, "auth-basic", "user name and password required", nil)
			return nil, false
		}
		res.passed("basic", user)
	}
	if a.jwt != nil {
		ok, jerr := a.jwt.verify(r.Context(), r)
		if jerr != nil {
			var detail error
			if jerr.err != nil {
				detail = jerr.err
			}
			if jerr.unavailable {
				s.refuse(w, r, rt, http.StatusServiceUnavailable, "auth-unavailable", "token keys unavailable", detail)
				return nil, false
			}
			v := `Bearer realm="wssproxy"`
			if jerr.reason != "missing token" { // RFC 6750 §3.1: no error without a token
				v += `, error="invalid_token", error_description="` + jerr.reason + `"`
			}
			w.Header().Set("WWW-Authenticate", v)
			s.refuse(w, r, rt, http.StatusUnauthorized, "auth-jwt", jerr.reason, detail)
			return nil, false
		}
		res.passed("jwt", ok.subject)
		for k, v := range ok.headers {
			res.set[k] = v
		}
		res.protocol = ok.protocol
		if a.jwt.closeAtExpiry {
			res.expiry = ok.expiry
		}
	}
	if a.forward != nil {
		set, ok := s.forwardAuth(w, r, rt, a.forward)
		if !ok {
			return nil, false
		}
		for k, v := range set {
			res.set[k] = v
		}
		subject := ""
		for _, name := range []string{"X-Auth-Request-User", "X-Forwarded-User", "X-User", "X-User-Id", "Remote-User"} {
			if v := set.Get(name); v != "" {
				subject = v
				break
			}
		}
		res.passed("forward", subject)
	}
	return r.WithContext(context.WithValue(r.Context(), authKey{}, res)), true
}

// applyAuth is the last step of forwardHeaders: h, bound for the backend,
// loses the client's copies of the route's identity headers and gets what
// r's auth found.
func (rt *route) applyAuth(h http.Header, r *http.Request) {
	if rt.auth == nil {
		return
	}
	for _, name := range rt.auth.strip {
		delete(h, name)
	}
	res := authOf(r)
	if res == nil {
		return
	}
	for k, v := range res.set {
		h[k] = v
	}
	if res.protocol != nil {
		if len(res.protocol) == 0 {
			delete(h, "Sec-Websocket-Protocol")
		} else {
			h.Set("Sec-Websocket-Protocol", strings.Join(res.protocol, ", "))
		}
	}
}

// who is the subject res authenticated, "" for none (or no auth).
func (res *authResult) who() string {
	if res == nil {
		return ""
	}
	return res.subject
}

// authAttrs are the access log's auth=… and subject=… for r, if any.
func authAttrs(res *authResult) []any {
	if res == nil {
		return nil
	}
	if res.subject == "" {
		return []any{"auth", res.methods}
	}
	return []any{"auth", res.methods, "subject", res.subject}
}
