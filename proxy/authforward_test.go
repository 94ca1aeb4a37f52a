package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// authService is a small real auth service, as an SSO's forward-auth
// endpoint behaves: the session cookie "s=tom-session" is tom; a browser
// without one is sent to log in (302 with a cookie); a bad bearer token
// is 401; anything else 403. It keeps what it was asked.
type authService struct {
	recorder // its requests, and last; not its ServeHTTP
}

func (a *authService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.reqs = append(a.reqs, r.Clone(context.Background()))
	a.mu.Unlock()
	switch c, _ := r.Cookie("s"); {
	case c != nil && c.Value == "tom-session":
		w.Header().Set("X-User-Id", "tom")
		w.Header().Add("X-Roles", "admin")
		w.Header().Add("X-Roles", "ops")
		w.Header().Set("X-Secret", "not for the backend")
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "bad token", http.StatusUnauthorized)
	case strings.Contains(r.Header.Get("Accept"), "text/html"):
		w.Header().Set("Set-Cookie", "rd=1; Path=/")
		w.Header().Set("Location", "https://login.test/?rd="+r.Header.Get("X-Forwarded-Uri"))
		w.WriteHeader(http.StatusFound)
	default:
		http.Error(w, "no", http.StatusForbidden)
	}
}

// TestForwardAuth guards forward_auth for WebSockets over HTTP/1.1 and
// HTTP/2 and for plain requests: the auth service gets the client's
// headers and the proxy's X-Forwarded-*; its 2xx lets the request on with
// forward_auth_headers (the client's own copies gone, other headers of
// its answer not passed); its 401, 403 and 302 reach the client as they
// are, Set-Cookie and WWW-Authenticate included, counted and logged.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	auth := &authService{}
	authAddr := testutil.Serve(t, auth)
	rec := &recorder{}
	cfg := route("/wss", "ws://"+testutil.Serve(t, rec))
	cfg.Routes[0].ForwardAuth = "http://" + authAddr + "/auth"
	cfg.Routes[0].ForwardAuthHeaders = []string{"X-User-Id", "x-roles"}
	reg := prometheus.NewRegistry()
	e := startProxy(t, cfg, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	ctx := testutil.Context(t, 20*time.Second)

	good := http.Header{"Cookie": {"s=tom-session"}, "Origin": {"https://app.test"}, "X-User-Id": {"forged"}, "X-Roles": {"root"}}
	for name, dial := range map[string]func(context.Context, string, *websocket.DialOptions) (*websocket.Conn, *http.Response, error){
		"h1": e.dial, "h2": e.h2(t).dial,
	} {
		c, _, err := dial(ctx, "/wss/room?id=7", &websocket.DialOptions{HTTPHeader: good.Clone(), Subprotocols: []string{"chat"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
		c.CloseNow()
		got := rec.last(t)
		if v := got.Header.Values("X-User-Id"); len(v) != 1 || v[0] != "tom" {
			t.Errorf("%s: backend got X-User-Id %q", name, v)
		}
		if v := got.Header.Values("X-Roles"); strings.Join(v, ",") != "admin,ops" {
			t.Errorf("%s: backend got X-Roles %q", name, v)
		}
		if got.Header.Get("X-Secret") != "" {
			t.Errorf("%s: a header not in forward_auth_headers reached the backend", name)
		}
		asked := auth.last(t)
		for k, want := range map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/wss/room?id=7", "X-Forwarded-Host": e.addr,
			"X-Forwarded-Proto": "https", "X-Real-Ip": "127.0.0.1", "Cookie": "s=tom-session",
			"Origin": "https://app.test", "Sec-Websocket-Protocol": "chat",
		} {
			if v := asked.Header.Get(k); v != want {
				t.Errorf("%s: the auth service got %s %q, want %q", name, k, v, want)
			}
		}
		if asked.Method != http.MethodGet || asked.URL.Path != "/auth" {
			t.Errorf("%s: the auth service got %s %s", name, asked.Method, asked.URL)
		}
	}
	n := len(rec.reqs)

	for _, tc := range []struct {
		name   string
		h      http.Header
		status int
		check  func(*http.Response) bool
	}{
		{"401", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized,
			func(r *http.Response) bool { return r.Header.Get("WWW-Authenticate") == `Bearer error="invalid_token"` }},
		{"302", http.Header{"Accept": {"text/html"}}, http.StatusFound, func(r *http.Response) bool {
			return r.Header.Get("Set-Cookie") == "rd=1; Path=/" && r.Header.Get("Location") == "https://login.test/?rd=/wss"
		}},
		{"403", nil, http.StatusForbidden, func(r *http.Response) bool { return r.Header.Get("X-Wssproxy-Error") == "" }},
	} {
		resp := handshake(t, e, ctx, "/wss", tc.h)
		if resp.StatusCode != tc.status || !tc.check(resp) {
			t.Errorf("%s: response %+v", tc.name, resp)
		}
	}
	e.logs.Wait(t, ctx, `status=403 refused=auth-forward`)
	if got := counter(t, reg, "wssproxy_requests_refused_total", "kind", "auth-forward"); got != 3 {
		t.Errorf("refused auth-forward = %v, want 3", got)
	}

	// Plain requests on the route: the same.
	for _, tc := range []struct {
		cookie string
		status int
	}{{"s=tom-session", http.StatusOK}, {"", http.StatusFound}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", "/wss/page"), nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("X-User-Id", "forged")
		if tc.cookie != "" {
			req.Header.Set("Cookie", tc.cookie)
		}
		resp, err := e.client.Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("plain GET with cookie %q: %d, want %d", tc.cookie, resp.StatusCode, tc.status)
		}
	}
	if got := rec.last(t); got.URL.Path != "/wss/page" || got.Header.Get("X-User-Id") != "tom" {
		t.Errorf("plain request reached the backend as %s with X-User-Id %q", got.URL.Path, got.Header.Get("X-User-Id"))
	}
	e.logs.Wait(t, ctx, `msg=request .*path=/wss/page.*auth=forward subject=tom`)
	rec.mu.Lock()
	if len(rec.reqs) != n+1 {
		t.Errorf("the backend got %d requests after the refusals, want 1", len(rec.reqs)-n)
	}
	rec.mu.Unlock()
}

// TestForwardAuthDownOrSlow guards the auth service's failures: not
// listening is 503, no answer within forward_auth_timeout is 504, each
// with the proxy's error header and a log line, and never the backend.
// An auth service on a unix socket ("http://unix:/path:/uri") is asked
// there.
func TestForwardAuthDownOrSlow(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	stuck := make(chan struct{})
	slow := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stuck:
		}
	}))
	t.Cleanup(func() { close(stuck) })
	sock := filepath.Join(t.TempDir(), "auth.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &authService{}, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })

	cfg := proxy.Config{Routes: []proxy.Route{
		{Path: "/down", Backend: backend, ForwardAuth: "http://" + testutil.ClosedPort(t) + "/auth"},
		{Path: "/slow", Backend: backend, ForwardAuth: "http://" + slow + "/auth", ForwardAuthTimeout: 300 * time.Millisecond},
		{Path: "/unix", Backend: backend, ForwardAuth: "http://unix:" + sock + ":/auth"},
	}}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	for _, tc := range []struct {
		path, kind string
		status     int
	}{{"/down", "auth-unavailable", http.StatusServiceUnavailable}, {"/slow", "auth-timeout", http.StatusGatewayTimeout}} {
		_, resp, err := e.dial(ctx, tc.path, nil)
		if err == nil || resp == nil || resp.StatusCode != tc.status || resp.Header.Get("X-Wssproxy-Error") != tc.kind {
			t.Errorf("%s: dial %v, response %+v", tc.path, err, resp)
		}
		e.logs.Wait(t, ctx, `refused=`+tc.kind)
	}
	c := e.mustDial(ctx, "/unix", &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"s=tom-session"}}})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
	if got := rec.last(t).Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("backend X-Forwarded-For %q", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != 1 {
		t.Errorf("the backend got %d handshakes, want the unix socket's one", len(rec.reqs))
	}
}

// handshake sends a WebSocket handshake with h through e's client,
// following no redirect, and returns the answer (body read and closed; a
// 101's connection closed).
func handshake(t testing.TB, e *env, ctx context.Context, path string, h http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", path), nil)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := e.client.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	return resp
}

// TestForwardAuthCountsDescriptors guards that a connection to the auth
// service is a descriptor of the budget, charged to the client whose
// handshake dialed it: with max_descriptors_per_ip = 2 (the client's
// connection and its backend's), the auth service cannot be asked and the
// handshake gets 503 limit-descriptors-per-ip; with 3 it passes.
func TestForwardAuthCountsDescriptors(t *testing.T) {
	t.Parallel()
	auth := testutil.Serve(t, &authService{})
	backend := echoBackend(t, echo.Options{})
	for _, tc := range []struct {
		share  int
		status int
	}{{2, http.StatusServiceUnavailable}, {3, http.StatusSwitchingProtocols}} {
		cfg := route("/wss", backend)
		cfg.MaxDescriptorsPerIP = &tc.share
		cfg.Routes[0].ForwardAuth = "http://" + auth + "/auth"
		e := startProxy(t, cfg)
		ctx := testutil.Context(t, 20*time.Second)
		resp := handshake(t, e, ctx, "/wss", http.Header{"Cookie": {"s=tom-session"}})
		if resp.StatusCode != tc.status || (tc.status == 503 && resp.Header.Get("X-Wssproxy-Error") != "limit-descriptors-per-ip") {
			t.Errorf("share %d: %d %q, want %d", tc.share, resp.StatusCode, resp.Header.Get("X-Wssproxy-Error"), tc.status)
		}
	}
}
