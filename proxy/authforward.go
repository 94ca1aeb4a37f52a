package proxy

// forward_auth: an auth service (oauth2-proxy, Authelia, an app's own
// /auth) asked first, as nginx's auth_request, Caddy's forward_auth and
// Traefik's ForwardAuth do.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// forwardAuth is a route's auth service.
type forwardAuth struct {
	name    string // as written, for logs
	url     string // what is requested (for a unix socket, with a placeholder host)
	socket  string // the unix socket, or ""
	roots   *x509.CertPool
	headers []string // forward_auth_headers, canonical
	timeout time.Duration
	client  *http.Client // made by bind, for one Server's state
}

// originalHeaders are how nginx configurations tell an auth service the
// request it authorizes (proxy_set_header X-Original-URL … in the auth
// location; Authelia's auth-request endpoint reads them): a client's own
// would let it name another URL, so they never reach the auth service.
var originalHeaders = []string{"X-Original-Url", "X-Original-Uri", "X-Original-Method"}

// forwardAuthMaxBody bounds the body of an auth service's refusal passed
// to the client (a login page's redirect, a short message).
const forwardAuthMaxBody = 64 << 10

// compileForwardAuth checks forward_auth: http:// or https://, or nginx's
// way of naming a unix socket, "http://unix:/run/auth.sock:/path".
func compileForwardAuth(key string, r *Route, roots *x509.CertPool) (*forwardAuth, []error) {
	var errs []error
	f := &forwardAuth{name: r.ForwardAuth, url: r.ForwardAuth, timeout: r.ForwardAuthTimeout, roots: roots}
	if rest, ok := strings.CutPrefix(r.ForwardAuth, "http://unix:"); ok {
		sock, p, _ := strings.Cut(rest, ":")
		if !strings.HasPrefix(sock, "/") {
			errs = append(errs, fieldErr(key+".forward_auth", `a unix socket is "http://unix:/path/to.sock:/uri", got %q`, r.ForwardAuth))
		}
		if p == "" {
			p = "/"
		}
		f.socket, f.url = sock, "http://localhost"+p
	}
	u, err := url.Parse(f.url)
	switch {
	case err != nil:
		errs = append(errs, fieldErr(key+".forward_auth", "not a URL: %v", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fieldErr(key+".forward_auth", `must be an http:// or https:// URL, or "http://unix:/path/to.sock:/uri", got %q`, r.ForwardAuth))
	case u.User != nil || u.Fragment != "":
		errs = append(errs, fieldErr(key+".forward_auth", "must not have a user or fragment, got %q", r.ForwardAuth))
	}
	for _, h := range r.ForwardAuthHeaders {
		if err := checkHeaderName(h); err != nil {
			errs = append(errs, fielderr.Wrap(key+".forward_auth_headers", err))
			continue
		}
		ch := http.CanonicalHeaderKey(h)
		if isHopByHop(ch) || isForwarding(ch) {
			errs = append(errs, fieldErr(key+".forward_auth_headers", "%q is a header the proxy manages", h))
			continue
		}
		f.headers = append(f.headers, ch)
	}
	return f, errs
}

// bind is f for one state of s: its own connection pool, whose
// connections count against s's descriptor budget, charged to the client
// whose request dialed them (fdbudget.go), as backend connections are,
// and whose idle connections are closed when ctx (the state's) ends.
func (f *forwardAuth) bind(s *Server, ctx context.Context) *forwardAuth {
	b := *f
	network, addr := "tcp", ""
	if f.socket != "" {
		network, addr = "unix", f.socket
	}
	var d net.Dialer
	dial := func(ctx context.Context, _, hostport string) (net.Conn, error) {
		fd, err := s.backendFD(clientIPFrom(ctx))
		if err != nil {
			return nil, err
		}
		c, err := d.DialContext(ctx, network, cmp.Or(addr, hostport))
		if err != nil {
			s.fds.release(fd)
			return nil, err
		}
		return &fdConn{Conn: c, fds: &s.fds, held: fd}, nil
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{RootCAs: f.roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	context.AfterFunc(ctx, tr.CloseIdleConnections)
	b.client = &http.Client{Transport: tr,
		// A 302 to a login page is the client's to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &b
}

// forwardAuth asks the route's auth service about r. On a 2xx it returns
// the forward_auth_headers to set on the request to the backend; else it
// has answered the client: with the auth service's answer as it is, or
// with 503 (not reachable) or 504 (no answer within forward_auth_timeout).
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request, rt *route, f *forwardAuth) (http.Header, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		s.refuse(w, r, rt, http.StatusInternalServerError, "auth-unavailable", "auth service unavailable", err)
		return nil, false
	}
	for k, v := range r.Header {
		if !isForwarding(k) && k != "Content-Length" && !strings.HasPrefix(k, ":") {
			req.Header[k] = v
		}
	}
	removeHopByHop(req.Header) // and what Connection names (so it must come along first)
	for _, name := range originalHeaders {
		req.Header.Del(name)
	}
	if !rt.underscores {
		dropUnderscored(req.Header) // as the backend would get them
	}
	method := r.Method
	if method == http.MethodConnect { // a WebSocket over HTTP/2: a GET handshake to the backend
		method = http.MethodGet
	}
	client := clientOf(r)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", r.URL.RequestURI())
	req.Header.Set("X-Forwarded-Host", r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	req.Header.Set("X-Forwarded-Proto", proto)
	req.Header.Set("X-Real-Ip", client.ip)
	req.Header.Set("X-Forwarded-For", client.xff)
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil
	}
	resp, err := f.client.Do(req)
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			s.clientGone(rt, clientIP(r), err)
		case fdErr(err):
			status, kind, public, _ := fdRefusal(err)
			s.refuse(w, r, rt, status, kind, public, err)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			s.refuse(w, r, rt, http.StatusGatewayTimeout, "auth-timeout", "auth service did not answer in time", err)
		default:
			s.refuse(w, r, rt, http.StatusServiceUnavailable, "auth-unavailable", "auth service unavailable", err)
		}
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, forwardAuthMaxBody)) // the connection can then be reused
		set := make(http.Header, len(f.headers))
		for _, name := range f.headers {
			if v := resp.Header.Values(name); len(v) > 0 {
				set[name] = v
			}
		}
		return set, true
	}
	// The auth service's answer is the client's: a 401 with its
	// WWW-Authenticate, a 403, a 302 to a login page with its Set-Cookie.
	if m := s.metrics.Load(); m != nil { // before the log line, as refuse does
		m.refused.WithLabelValues("auth-forward").Inc()
	}
	s.log.Info("request refused", "status", resp.StatusCode, "refused", "auth-forward", "reason", "auth service refused",
		"client_ip", client.ip, "host", r.Host, "path", r.URL.Path, "route", rt.name, "auth_service", f.name)
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		if k == stsHeader && h[k] != nil || k == "Content-Length" {
			continue
		}
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, io.LimitReader(resp.Body, forwardAuthMaxBody)); err != nil {
		s.log.Debug("auth service's answer not passed on whole", "route", rt.name, "error", err)
	}
	return nil, false
}

// fdErr reports the descriptor budget's refusals (and the proxy's own
// EMFILE): the proxy's limits, not the auth service's failure.
func fdErr(err error) bool {
	_, _, _, ok := fdRefusal(err)
	return ok
}
