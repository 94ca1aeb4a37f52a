package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/htpasswd"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// get asks the admin listener for path and decodes its JSON into v; it
// returns the status.
func (r *rig) get(path string, v any) int {
	r.t.Helper()
	resp, body := r.page(path)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			r.t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode
}

// post sends POST path with form values and headers ("Name: value").
func (r *rig) post(path string, form url.Values, headers ...string) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.admin+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitTunnel reads GET /tunnels/{id} until ok says it is as wanted: the
// pumps publish their counts after each read's write, a moment after
// the peer may have seen it.
func (r *rig) waitTunnel(ctx context.Context, id uint64, ok func(proxy.TunnelInfo) bool) proxy.TunnelInfo {
	r.t.Helper()
	var ti proxy.TunnelInfo
	for {
		ti = proxy.TunnelInfo{}
		if r.get(fmt.Sprintf("/tunnels/%d", id), &ti) == http.StatusOK && ok(ti) {
			return ti
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("tunnel %d never as wanted: %+v", id, ti)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestTunnelAPI guards GET /tunnels and /tunnels/{id}: every field of a
// tunnel, the filters, the order and the pages, and the answers to bad
// queries.
func TestTunnelAPI(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	r := newRig(t)
	before := time.Now()
	a, aPort := r.dial(ctx, "/a")
	opened := time.Now()
	roundTrip(t, ctx, a, "hello")
	roundTrip(t, ctx, a, "world!")
	sent := time.Now()
	r.dial(ctx, "/a")
	b, _ := r.dial(ctx, "/b")
	roundTrip(t, ctx, b, "x")

	var page admin.TunnelPage
	if st := r.get("/tunnels?sort=id", &page); st != http.StatusOK || page.Total != 3 || len(page.Tunnels) != 3 {
		t.Fatalf("GET /tunnels: %d, %+v", st, page)
	}
	id := page.Tunnels[0].ID
	got := r.waitTunnel(ctx, id, func(ti proxy.TunnelInfo) bool { return ti.In.Messages == 2 && ti.Out.Messages == 2 })

	// Every field.
	if got.ClientIP != "127.0.0.1" || got.ClientPort != aPort {
		t.Errorf("client %s port %d, want 127.0.0.1 port %d", got.ClientIP, got.ClientPort, aPort)
	}
	if got.Route != "route[1] /a" || !strings.HasPrefix(got.Backend, "ws://127.0.0.1:") || got.Path != "/a" || got.Host != r.addr {
		t.Errorf("route %q backend %q path %q host %q", got.Route, got.Backend, got.Path, got.Host)
	}
	if got.Protocol != "h1" || (got.IO != "raw" && got.IO != "portable") {
		t.Errorf("protocol %q io %q", got.Protocol, got.IO)
	}
	if got.Opened.Before(before) || got.Opened.After(opened) {
		t.Errorf("opened %v, not between %v and %v", got.Opened, before, opened)
	}
	if got.AgeSeconds <= 0 || got.AgeSeconds > time.Since(before).Seconds() {
		t.Errorf("age %v s", got.AgeSeconds)
	}
	// The client's frames are masked: 6 bytes of header each; the echoes 2.
	if got.In.Bytes != 6+5+6+6 || got.Out.Bytes != 2+5+2+6 {
		t.Errorf("bytes in %d out %d, want 23 and 15", got.In.Bytes, got.Out.Bytes)
	}
	for _, d := range []proxy.DirInfo{got.In, got.Out} {
		if d.LastMessage == nil || d.LastMessage.Before(opened) || d.LastMessage.After(time.Now()) {
			t.Errorf("last message %v, want after %v", d.LastMessage, opened)
		}
	}
	if got.In.LastMessage.After(sent) {
		t.Errorf("last message in %v after the last was sent (%v)", got.In.LastMessage, sent)
	}
	if got.Subject != "" || got.ThrottledSeconds != 0 {
		t.Errorf("subject %q throttled %v", got.Subject, got.ThrottledSeconds)
	}
	// The JSON's names, as the README documents them.
	var raw map[string]any
	r.get(fmt.Sprintf("/tunnels/%d", id), &raw)
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := "age_seconds backend client_ip client_port host id in io opened out path protocol route throttled_seconds"; strings.Join(keys, " ") != want {
		t.Errorf("keys %v, want %s", keys, want)
	}
	if in := raw["in"].(map[string]any); len(in) != 3 || in["bytes"] != 23.0 || in["messages"] != 2.0 || in["last_message"] == nil {
		t.Errorf("in: %v", in)
	}

	for _, c := range []struct {
		query string
		total int
		first uint64 // 0: not checked
		n     int
	}{
		{"route=" + url.QueryEscape("route[2] /b"), 1, page.Tunnels[2].ID, 1},
		{"route=nothing", 0, 0, 0},
		{"ip=127.0.0.1", 3, id, 3},
		{"ip=127.0.0.0/8", 3, id, 3},
		{"ip=10.0.0.0/8", 0, 0, 0},
		{"idle_over=1h", 0, 0, 0},
		{"idle_over=1ns", 3, id, 3},
		{"sort=-messages_in", 3, id, 3},
		{"sort=-id", 3, page.Tunnels[2].ID, 3},
		{"sort=id&offset=1&limit=1", 3, page.Tunnels[1].ID, 1},
		{"offset=5", 3, 0, 0},
	} {
		var p admin.TunnelPage
		if st := r.get("/tunnels?"+c.query, &p); st != http.StatusOK || p.Total != c.total || len(p.Tunnels) != c.n ||
			(c.first != 0 && p.Tunnels[0].ID != c.first) {
			t.Errorf("?%s: %d, total %d, %d tunnels, want total %d, %d from id %d: %+v", c.query, st, p.Total, len(p.Tunnels), c.total, c.n, c.first, p.Tunnels)
		}
	}
	for _, q := range []string{"/tunnels?ip=nope", "/tunnels?idle_over=10", "/tunnels?sort=size", "/tunnels?limit=5000", "/tunnels?offset=-1", "/tunnels/x"} {
		if st := r.get(q, nil); st != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", q, st)
		}
	}
	if st := r.get("/tunnels/999999", nil); st != http.StatusNotFound {
		t.Errorf("GET an unknown tunnel: %d, want 404", st)
	}
	// The admin listener's own rule: a Host not its own is refused.
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.admin+"/tunnels", nil)
	req.Host = "evil.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET /tunnels with Host evil.example: %v %v, want 421", resp.StatusCode, err)
	}
}

// TestTunnelClose guards POST /tunnels/{id}/close: 1008 to the client and
// 1001 to the backend by default, or the codes and reason asked; a line
// saying who asked; cross-site requests (another site, another port of
// this host, a same-site page) refused with 403, and a GET refused, the
// tunnel left open; a request without Origin, or with the admin page's own,
// accepted.
func TestTunnelClose(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	r := newRig(t)
	a, _ := r.dial(ctx, "/a")
	b, _ := r.dial(ctx, "/b")
	c, _ := r.dial(ctx, "/b")
	var page admin.TunnelPage
	r.get("/tunnels?sort=id", &page)
	if len(page.Tunnels) != 3 {
		t.Fatalf("%d tunnels", len(page.Tunnels))
	}
	idA, idB, idC := page.Tunnels[0].ID, page.Tunnels[1].ID, page.Tunnels[2].ID

	for _, h := range []string{"Origin: http://evil.example", "Sec-Fetch-Site: cross-site", "Origin: null", "Sec-Fetch-Site: same-site",
		"Origin: http://" + r.admin[:strings.LastIndex(r.admin, ":")] + ":1"} { // another port of this host is another origin
		if st, body := r.post(fmt.Sprintf("/tunnels/%d/close", idA), nil, h); st != http.StatusForbidden {
			t.Errorf("POST with %s: %d %s, want 403", h, st, body)
		}
	}
	if resp, _ := r.page(fmt.Sprintf("/tunnels/%d/close", idA)); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of the close URL: %d, want 405", resp.StatusCode)
	}
	roundTrip(t, ctx, a, "still open")
	if !strings.Contains(r.logs.String(), "cross-origin tunnel close refused") {
		t.Errorf("no line for the refusal:\n%s", r.logs)
	}

	// From the admin page itself: its Origin is the listener's.
	if st, body := r.post(fmt.Sprintf("/tunnels/%d/close", idA), nil, "Origin: http://"+r.admin, "Sec-Fetch-Site: same-origin"); st != http.StatusOK {
		t.Fatalf("POST from the admin page: %d %s", st, body)
	}
	if code, reason, err := closeCode(ctx, a); code != websocket.StatusPolicyViolation || reason != "closed by the operator" {
		t.Errorf("client got %v %q %v, want 1008", code, reason, err)
	}
	if got := r.backendClose(ctx); got != websocket.StatusGoingAway {
		t.Errorf("backend got %v, want 1001", got)
	}

	// Without Origin (curl), with codes and a reason.
	form := url.Values{"code": {"4001"}, "backend_code": {"4002"}, "reason": {"maintenance"}}
	if st, body := r.post(fmt.Sprintf("/tunnels/%d/close", idB), form); st != http.StatusOK {
		t.Fatalf("POST without Origin: %d %s", st, body)
	}
	if code, reason, _ := closeCode(ctx, b); code != 4001 || reason != "maintenance" {
		t.Errorf("client got %v %q, want 4001 maintenance", code, reason)
	}
	if got := r.backendClose(ctx); got != 4002 {
		t.Errorf("backend got %v, want 4002", got)
	}
	r.logs.Wait(t, ctx, `admin: tunnel close asked.* id=`+fmt.Sprint(idB)+`.*code=4001.*asked_by=127\.0\.0\.1:`)
	r.logs.Wait(t, ctx, `tunnel closed.*path=/b.*close_code=400[12].*reason="closed by admin"`)

	for _, c := range []struct {
		path string
		form url.Values
		want int
	}{
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"code": {"1005"}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"backend_code": {"99999"}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"reason": {strings.Repeat("x", 124)}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"reason": {"caf\xe9"}}, http.StatusBadRequest}, // not UTF-8 (RFC 6455 §5.5.1)
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"code": {"1015"}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"code": {"1006"}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"code": {"2999"}}, http.StatusBadRequest},
		{fmt.Sprintf("/tunnels/%d/close", idC), url.Values{"code": {"1004"}}, http.StatusBadRequest},
		{"/tunnels/999999/close", nil, http.StatusNotFound},
		{"/tunnels/x/close", nil, http.StatusBadRequest},
	} {
		if st, body := r.post(c.path, c.form); st != c.want {
			t.Errorf("POST %s %v: %d %s, want %d", c.path, c.form, st, body, c.want)
		}
	}
	roundTrip(t, ctx, c, "untouched")

	// wssproxy tunnels: the table, then -close.
	var out, errOut bytes.Buffer
	if err := admin.RunTunnels(ctx, []string{"-admin", r.admin, "-route", "route[2] /b"}, &out, &errOut); err != nil {
		t.Fatalf("tunnels: %v %s", err, errOut.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.HasPrefix(lines[1], fmt.Sprint(idC)+" ") || !strings.Contains(lines[1], "route[2] /b") || lines[2] != "1 tunnel" {
		t.Errorf("table:\n%s", out.String())
	}
	out.Reset()
	if err := admin.RunTunnels(ctx, []string{"-admin", r.admin, "-close", fmt.Sprint(idC)}, &out, &errOut); err != nil {
		t.Fatalf("tunnels -close: %v %s", err, errOut.String())
	}
	if code, _, _ := closeCode(ctx, c); code != websocket.StatusPolicyViolation {
		t.Errorf("client got %v, want 1008", code)
	}
	if err := admin.RunTunnels(ctx, []string{"-admin", r.admin, "-close", "999999"}, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "404") {
		t.Errorf("tunnels -close of no tunnel: %v %q", err, errOut.String())
	}
}

// TestTunnelAPISubject guards auth_subject: a tunnel opened through a
// route's basic_auth shows who it authenticated as, and one without auth
// shows none.
func TestTunnelAPISubject(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	file := htpasswdFile(t, "tom", "s3cret")
	r := newRig(t, proxy.Route{Path: "/a", BasicAuth: file}, proxy.Route{Path: "/b"})
	tr := &http.Transport{TLSClientConfig: r.tls.Clone()}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("tom:s3cret")))
	a, _, err := websocket.Dial(ctx, "wss://"+r.addr+"/a", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	roundTrip(t, ctx, a, "hello")
	r.dial(ctx, "/b")
	var page admin.TunnelPage
	if st := r.get("/tunnels?sort=id", &page); st != http.StatusOK || len(page.Tunnels) != 2 {
		t.Fatalf("GET /tunnels: %d, %+v", st, page)
	}
	if got := page.Tunnels[0]; got.Path != "/a" || got.Subject != "tom" {
		t.Errorf("tunnel on /a: path %q subject %q, want /a and tom", got.Path, got.Subject)
	}
	if got := page.Tunnels[1]; got.Subject != "" {
		t.Errorf("tunnel without auth: subject %q, want none", got.Subject)
	}
}

// TestTunnelCloseLogsUser guards "logged with who asked" behind admin
// basic_auth: the close's line names the admin user, not only the address
// the request came from.
func TestTunnelCloseLogsUser(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	file := htpasswdFile(t, "ops", "s3cret")
	users, err := htpasswd.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	guarded := testutil.Serve(t, admin.Handler(admin.Options{Listen: "127.0.0.1:0", Server: r.srv,
		Listening: func() *health.Listening { return nil }, Log: r.log, Metrics: http.NotFoundHandler(),
		BasicAuth: func() *htpasswd.File { return users }}))
	a, _ := r.dial(ctx, "/a")
	var page admin.TunnelPage
	r.get("/tunnels", &page)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/tunnels/%d/close", guarded, page.Tunnels[0].ID), nil)
	req.SetBasicAuth("ops", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST close as ops: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _, _ := closeCode(ctx, a); code != websocket.StatusPolicyViolation {
		t.Errorf("client got %v, want 1008", code)
	}
	r.logs.Wait(t, ctx, `admin: tunnel close asked.* asked_by=127\.0\.0\.1:\d+ user=ops`)
}

// htpasswdFile is an htpasswd file in t.TempDir() with one bcrypt entry.
func htpasswdFile(t *testing.T, user, pass string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
