package proxy_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// htpasswdFile writes an htpasswd file with Debian's htpasswd -B (apache2-utils).
func htpasswdFile(t testing.TB, users ...string) string {
	t.Helper()
	bin, err := exec.LookPath("htpasswd")
	testutil.Need(t, err == nil, "htpasswd (Debian's apache2-utils) is not installed")
	f := filepath.Join(t.TempDir(), "htpasswd")
	for i := 0; i < len(users); i += 2 {
		args := []string{"-b", "-B", "-C", "5", f, users[i], users[i+1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd: %v: %s", err, out)
		}
	}
	return f
}

// TestBasicAuth guards basic_auth with a file htpasswd -B wrote: the right
// user and password pass (WebSocket and plain request, the user on the
// access line), a wrong or missing one is 401 with WWW-Authenticate:
// Basic, counted, and the backend never sees it.
func TestBasicAuth(t *testing.T) {
	t.Parallel()
	file := htpasswdFile(t, "tom", "s3cret", "ann", "other")
	rec := &recorder{}
	cfg := route("/wss", "ws://"+testutil.Serve(t, rec))
	cfg.Routes[0].BasicAuth = file
	reg := prometheus.NewRegistry()
	e := startProxy(t, cfg, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	ctx := testutil.Context(t, 20*time.Second)
	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	for range 2 { // the second time from what was remembered
		c := e.mustDial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: basic("tom", "s3cret")})
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
		c.Close(websocket.StatusNormalClosure, "")
	}
	e.logs.Wait(t, ctx, `msg="tunnel closed".*auth=basic subject=tom`)
	for _, h := range []http.Header{basic("tom", "wrong"), basic("nobody", "s3cret"), basic("ann", "s3cret"), nil} {
		resp := handshake(t, e, ctx, "/wss", h)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%v: %d %q", h, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := counter(t, reg, "wssproxy_requests_refused_total", "kind", "auth-basic"); n != 4 {
		t.Errorf("refused auth-basic = %v, want 4", n)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("https", "/wss/x"), nil)
	req.SetBasicAuth("ann", "other")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("plain request: %d", resp.StatusCode)
	}
	e.logs.Wait(t, ctx, `msg=request .*auth=basic subject=ann`)
	rec.mu.Lock()
	if len(rec.reqs) != 3 {
		t.Errorf("the backend got %d requests, want 3", len(rec.reqs))
	}
	rec.mu.Unlock()

	// A reload reads the file again.
	data, err := os.ReadFile(htpasswdFile(t, "joe", "new"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp := handshake(t, e, ctx, "/wss", basic("tom", "s3cret")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tom after the reload: %d", resp.StatusCode)
	}
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: basic("joe", "new")})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
}

// TestBasicAuthFileChecked guards that basic_auth is checked when the
// configuration is compiled: a hash other than bcrypt is refused with the
// file, line and user, under the route's key.
func TestBasicAuthFileChecked(t *testing.T) {
	t.Parallel()
	good := htpasswdFile(t, "tom", "s3cret")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, line, want string
	}{
		{"md5", "ann:$apr1$abcdefgh$0123456789abcdefghijkl", `route[1].basic_auth: ` + "%s" + `:2: user "ann": not a bcrypt hash`},
		{"sha1", "ann:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", `route[1].basic_auth: ` + "%s" + `:2: user "ann": not a bcrypt hash`},
		{"plain", "ann:secret", `route[1].basic_auth: ` + "%s" + `:2: user "ann": not a bcrypt hash`},
		{"no colon", "ann", `route[1].basic_auth: ` + "%s" + `:2: not a user:hash line`},
	} {
		f := filepath.Join(t.TempDir(), "htpasswd")
		os.WriteFile(f, append(append([]byte{}, data...), tc.line+"\n"...), 0o600)
		cfg := route("/wss", "ws://127.0.0.1:1")
		cfg.Routes[0].BasicAuth = f
		_, err := proxy.Compile(cfg)
		if want := strings.Replace(tc.want, "%s", f, 1); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tc.name, err, want)
		}
	}
}
