package proxy_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestIdentityHeadersStrippedEverywhere guards that the identity headers
// a configuration's auth sets (forward_auth_headers, claims_headers) are
// the proxy's on every route: a client cannot send them through a route
// without auth (or with other auth) to a backend that also serves a route
// that sets them, in any case or number of copies, over a WebSocket or a
// plain request.
func TestIdentityHeadersStrippedEverywhere(t *testing.T) {
	t.Parallel()
	es := newSigner(t, "ES256", "")
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	cfg := route("/wss", backend)
	cfg.Routes[0].ForwardAuth = "http://" + testutil.Serve(t, &authService{}) + "/auth"
	cfg.Routes[0].ForwardAuthHeaders = []string{"X-User-Id"}
	cfg.Routes = append(cfg.Routes,
		proxy.Route{Path: "/jwt", Backend: backend, JWT: &proxy.JWT{KeyFile: writePublicPEM(t, es),
			ClaimsHeaders: map[string]string{"roles": "x-roles"}}},
		proxy.Route{Path: "/public", Backend: backend, SetHeaders: map[string]string{"X-Tenant": "public"}})
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	forged := http.Header{"X-User-Id": {"admin", "root"}, "X-Roles": {"admin"}}

	c := e.mustDial(ctx, "/public", &websocket.DialOptions{HTTPHeader: forged.Clone()})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
	c.CloseNow()
	check := func(how string) {
		t.Helper()
		got := rec.last(t)
		for _, name := range []string{"X-User-Id", "X-Roles"} {
			if v := got.Header.Values(name); len(v) != 0 {
				t.Errorf("%s: the backend got the client's %s %q through a route without auth", how, name, v)
			}
		}
		if got.Header.Get("X-Tenant") != "public" {
			t.Errorf("%s: set_headers lost: %q", how, got.Header.Get("X-Tenant"))
		}
	}
	check("WebSocket")

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", "/public/page"), nil)
	req.Header = forged.Clone()
	req.Header["x-user-id"] = []string{"lower"} // as sent on the wire: net/http canonicalises it
	sendOK(t, e, req)
	check("plain request")

	// A route with auth of its own loses the other routes' identity
	// headers too.
	h := forged.Clone()
	h.Set("Authorization", "Bearer "+es.token(t, claims("tom", time.Hour), nil))
	c = e.mustDial(ctx, "/jwt", &websocket.DialOptions{HTTPHeader: h})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
	c.CloseNow()
	if v := rec.last(t).Header.Values("X-User-Id"); len(v) != 0 {
		t.Errorf("the backend got the client's X-User-Id %q through the jwt route", v)
	}
}

// TestIdentityHeadersNotProxyManaged guards that neither an auth service
// nor a token's claims can name the headers the proxy writes itself
// (X-Real-IP, X-Forwarded-For, X-Client-Cert-*) or hop-by-hop ones: the
// configuration is refused, naming the key.
func TestIdentityHeadersNotProxyManaged(t *testing.T) {
	t.Parallel()
	keys := writePublicPEM(t, newSigner(t, "ES256", ""))
	for _, tc := range []struct {
		name, want string
		set        func(*proxy.Route)
	}{
		{"forward X-Real-IP", "route[1].forward_auth_headers", func(r *proxy.Route) {
			r.ForwardAuth, r.ForwardAuthHeaders = "http://127.0.0.1:1/auth", []string{"X-Real-IP"}
		}},
		{"claim X-Real-IP", "route[1].jwt.claims_headers", func(r *proxy.Route) {
			r.JWT = &proxy.JWT{KeyFile: keys, ClaimsHeaders: map[string]string{"sub": "x-real-ip"}}
		}},
		{"claim X-Client-Cert-Subject", "route[1].jwt.claims_headers", func(r *proxy.Route) {
			r.JWT = &proxy.JWT{KeyFile: keys, ClaimsHeaders: map[string]string{"sub": "X-Client-Cert-Subject"}}
		}},
		{"claim Connection", "route[1].jwt.claims_headers", func(r *proxy.Route) {
			r.JWT = &proxy.JWT{KeyFile: keys, ClaimsHeaders: map[string]string{"sub": "Connection"}}
		}},
	} {
		cfg := route("/wss", "ws://127.0.0.1:1")
		tc.set(&cfg.Routes[0])
		_, err := proxy.Compile(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want+": ") || !strings.Contains(err.Error(), "a header the proxy manages") {
			t.Errorf("%s: %v, want %s refused", tc.name, err, tc.want)
		}
	}
}

// TestForwardAuthRequestShape guards what the auth service is sent for a
// plain request with a body: a GET without the body, without the
// hop-by-hop headers the client's Connection header names (they are the
// proxy's connection's, as for the backend), and without a client's
// X-Original-URL/-URI/-Method, which auth services behind nginx (Authelia's
// auth-request endpoint) take as the request being authorized.
func TestForwardAuthRequestShape(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, drop, orig string
		body               int
	}
	got := make(chan seen, 1)
	authAddr := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("X-Drop"), r.Header.Get("X-Original-Url") + r.Header.Get("X-Original-Uri") + r.Header.Get("X-Original-Method"), len(b)}
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := &recorder{}
	cfg := route("/wss", "ws://"+testutil.Serve(t, rec))
	cfg.Routes[0].ForwardAuth = "http://" + authAddr + "/auth"
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url("https", "/wss/form"), strings.NewReader("password=hunter2"))
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "hop")
	req.Header.Set("X-Original-URL", "https://public.example/")
	req.Header.Set("X-Original-URI", "/public")
	req.Header.Set("X-Original-Method", "GET")
	sendOK(t, e, req)
	if s := <-got; s.method != http.MethodGet || s.body != 0 || s.drop != "" || s.orig != "" {
		t.Errorf("the auth service got %s with %d body bytes, X-Drop %q, X-Original-* %q; want GET and none of them", s.method, s.body, s.drop, s.orig)
	}
	if b := rec.last(t).Header.Get("X-Drop"); b != "" {
		t.Errorf("the backend got X-Drop %q", b)
	}
}

// sendOK sends req through e's client and wants 200.
func sendOK(t *testing.T, e *env, req *http.Request) {
	t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
	}
}

// TestAuthRouteWithoutTrailingSlash guards a route path ending in "/"
// with auth ("/admin/") beside a route without it ("/"): "/admin" is the
// slash route's path in all but the slash, and many backends serve both
// alike, so it must not reach the backend through "/" unauthenticated.
// As nginx does for such a location, the answer is a 301 to "/admin/";
// a WebSocket handshake there never gets its 101.
func TestAuthRouteWithoutTrailingSlash(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	cfg := route("/", backend)
	users := htpasswdFile(t, "tom", "s3cret")
	cfg.Routes = append(cfg.Routes, proxy.Route{Path: "/admin/", Backend: backend, BasicAuth: users},
		proxy.Route{Path: "/status/", Backend: backend, BasicAuth: users},
		proxy.Route{Path: "= /status", Backend: backend}) // routed on purpose: served, not redirected
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", "/admin?x=1"), nil)
	resp, err := e.client.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/admin/?x=1" {
		t.Errorf("GET /admin: %d Location %q, want 301 to /admin/?x=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := handshake(t, e, ctx, "/admin", nil); resp.StatusCode == http.StatusSwitchingProtocols {
		t.Error("a WebSocket to /admin opened without credentials")
	}
	sendOK(t, e, mustRequest(t, ctx, e.url("https", "/adminx"))) // not the route's path: "/" serves it
	sendOK(t, e, mustRequest(t, ctx, e.url("https", "/status")))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		if r.URL.Path == "/admin" {
			t.Errorf("the backend got %s %s without auth", r.Method, r.URL.Path)
		}
	}
	if len(rec.reqs) != 2 {
		t.Errorf("the backend got %d requests, want 2 (/adminx, /status)", len(rec.reqs))
	}
}

func mustRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
