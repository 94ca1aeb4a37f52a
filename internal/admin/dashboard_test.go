package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// page GETs path from the admin listener and returns the response and its
// body.
func (r *rig) page(path string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.admin + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestDashboardWithoutJavaScript guards the page as a browser without
// JavaScript sees it: the routes with their backends, the tunnel table
// (filtered and ordered by the form's query), a close button that works
// as a plain form post, and nothing loaded from anywhere but the listener.
func TestDashboardWithoutJavaScript(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	r := newRig(t)
	r.withHistory()
	a, _ := r.dial(ctx, "/a")
	r.dial(ctx, "/a")
	r.dial(ctx, "/b")
	roundTrip(t, ctx, a, "hi")

	resp, body := r.page("/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	rows := regexp.MustCompile(`<tr data-id="(\d+)">`).FindAllStringSubmatch(body, -1)
	if len(rows) != 3 {
		t.Fatalf("%d tunnel rows, want 3", len(rows))
	}
	for _, want := range []string{"route[1] /a", "route[2] /b", " up (3 open)", "no active check", `<noscript><meta http-equiv="refresh"`,
		"3 of 3 shown", `action="/tunnels/` + rows[0][1] + `/close"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Error("the page loads something from elsewhere")
	}
	_, body = r.page("/?route=" + url.QueryEscape("route[2] /b") + "&sort=-id")
	if n := strings.Count(body, "<tr data-id="); n != 1 || !strings.Contains(body, "1 of 1 shown") {
		t.Errorf("filtered page: %d rows", n)
	}
	if resp, _ := r.page("/?sort=nope"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad order: %d", resp.StatusCode)
	}
	for path, ctype := range map[string]string{"/assets/app.js": "text/javascript", "/assets/style.css": "text/css"} {
		if resp, body := r.page(path); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) < 100 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := r.page("/assets/index.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the template is served: %d", resp.StatusCode)
	}

	// The close button without JavaScript: a form post from the page,
	// answered with a way back to it.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.admin+"/tunnels/"+rows[0][1]+"/close", strings.NewReader("return=page"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+r.admin)
	cresp, err := client.Do(req)
	if err != nil || cresp.StatusCode != http.StatusSeeOther || cresp.Header.Get("Location") != "/" {
		t.Fatalf("form close: %v %v", cresp, err)
	}
	if code, _, _ := closeCode(ctx, a); code != 1008 {
		t.Errorf("client got %v, want 1008", code)
	}
}

// TestDashboardJSON guards /dashboard.json: the routes and backends, and
// the history's points (only those after ?since=), whose rates come from
// the tunnels' own counts: 10 messages each way in one sample's interval.
func TestDashboardJSON(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	r := newRig(t)
	h := r.withHistory()
	c, _ := r.dial(ctx, "/a")
	begin := time.Now()
	h.Sample(begin) // the interval before this holds the handshake
	for range 10 {
		roundTrip(t, ctx, c, "0123456789")
	}
	var ti admin.TunnelPage
	r.get("/tunnels", &ti)
	r.waitTunnel(ctx, ti.Tunnels[0].ID, func(x proxy.TunnelInfo) bool { return x.In.Messages == 10 && x.Out.Messages == 10 })
	h.Sample(begin.Add(2 * time.Second))

	var ov admin.Overview
	resp, body := r.page("/dashboard.json?since=0")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), &ov); err != nil {
		t.Fatal(err)
	}
	if ov.Open != 1 || len(ov.Routes) != 2 || ov.Routes[0].Name != "route[1] /a" || ov.Routes[0].Open != 1 ||
		len(ov.Routes[0].Backends) != 1 || !ov.Routes[0].Backends[0].Up || ov.Routes[0].Backends[0].LastCheck != nil {
		t.Errorf("overview %+v", ov)
	}
	if len(ov.Points) < 2 {
		t.Fatalf("%d points", len(ov.Points))
	}
	first, last := ov.Points[len(ov.Points)-2], ov.Points[len(ov.Points)-1]
	if first.Handshakes <= 0 || first.Open != 1 {
		t.Errorf("the handshake's point: %+v", first)
	}
	// 10 messages of 10 bytes each way over 2 s: 5/s; bytes 16 and 12 a frame.
	if got := last.Routes["route[1] /a"]; got != [4]float64{5, 5, 80, 60} || last.Handshakes != 0 {
		t.Errorf("the messages' point: %+v, want [5 5 80 60]", last)
	}
	var later admin.Overview
	_, body = r.page("/dashboard.json?since=" + strconv.FormatInt(last.T, 10))
	json.Unmarshal([]byte(body), &later)
	if len(later.Points) != 0 {
		t.Errorf("%d points after the last", len(later.Points))
	}
}

// TestDashboardBackendHealth guards the backends' health on the dashboard:
// with active checks, when the last one ended and how long it took, in
// the JSON and on the page.
func TestDashboardBackendHealth(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	r := newRig(t, proxy.Route{Path: "/a", HealthInterval: 20 * time.Millisecond})
	for {
		var ov admin.Overview
		_, body := r.page("/dashboard.json")
		if err := json.Unmarshal([]byte(body), &ov); err != nil {
			t.Fatal(err)
		}
		if b := ov.Routes[0].Backends[0]; b.LastCheck != nil {
			if b.LatencyMS <= 0 || b.CheckErr != "" || time.Since(*b.LastCheck) < 0 || !b.Up {
				t.Fatalf("backend %+v", b)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no check reported")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, page := r.page("/"); !regexp.MustCompile(`checked \S+ ago in [0-9.]+ ms`).MatchString(page) {
		t.Error("the page does not show the last check")
	}
}

// TestHistoryRing guards the ring buffer: it keeps the last hour's points
// (HistorySpan / SampleEvery of them), oldest first, and Since skips what
// the page has.
func TestHistoryRing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := admin.NewHistory(r.srv, nil, 0)
	t.Cleanup(h.Stop)
	keep := int(admin.HistorySpan / admin.SampleEvery)
	start := time.Now()
	for i := 1; i <= keep+100; i++ {
		h.Sample(start.Add(time.Duration(i) * admin.SampleEvery))
	}
	all := h.Since(0)
	if len(all) != keep {
		t.Fatalf("%d points, want %d", len(all), keep)
	}
	for i, p := range all {
		if want := start.Add(time.Duration(101+i) * admin.SampleEvery).UnixMilli(); p.T != want {
			t.Fatalf("point %d at %d, want %d", i, p.T, want)
		}
	}
	if got := h.Since(all[keep-3].T); len(got) != 2 || got[0].T != all[keep-2].T {
		t.Errorf("since the third last: %d points", len(got))
	}
}
