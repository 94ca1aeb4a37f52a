package admin

// The dashboard at /: one server-rendered page (routes, backends with
// their last health check, certificates, the open tunnels with filters,
// order and close buttons) that is complete without JavaScript, and a
// small embedded script that keeps it live: it polls /dashboard.json and
// /tunnels every PollEvery and draws the last hour's charts from History.
// Polling, not server-sent events: the admin listener bounds connections
// (32, a quarter per address) and every response's time (WriteTimeout), a
// stream would hold one of each for as long as a page is open, and an
// incremental poll (?since=) costs a few hundred bytes (admin's
// BenchmarkDashboardPoll).

import (
	"cmp"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// PollEvery is how often the dashboard's script asks for news.
const PollEvery = SampleEvery

//go:embed assets
var assets embed.FS

var assetFiles, _ = fs.Sub(assets, "assets")

var pageTmpl = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"ago":      func(t time.Time) string { return round(time.Since(t)).String() },
	"duration": func(s float64) string { return round(time.Duration(s * float64(time.Second))).String() },
	"idle":     func(t proxy.TunnelInfo) string { return round(t.Idle(time.Now())).String() },
}).ParseFS(assets, "assets/index.html"))

// CertInfo is a certificate as the dashboard shows it: a file's, or an
// ACME host's (whose NotAfter is nil until it has one) with its renewal.
type CertInfo struct {
	Names         []string   `json:"names"`
	NotAfter      *time.Time `json:"not_after"` // nil: none yet
	DaysLeft      int        `json:"days_left"`
	Fingerprint   string     `json:"sha256"`
	ACME          bool       `json:"acme"`
	NextRenewal   *time.Time `json:"next_renewal,omitempty"`
	RenewalErrors int64      `json:"renewal_errors"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

// BackendInfo is a backend of a route as the dashboard shows it.
type BackendInfo struct {
	Name      string     `json:"name"`
	Up        bool       `json:"up"`
	Open      int64      `json:"open"`
	LastCheck *time.Time `json:"last_check"` // nil: no active check yet (or none configured)
	LatencyMS float64    `json:"latency_ms"`
	CheckErr  string     `json:"check_error,omitempty"`
}

// RouteInfo is a route as the dashboard shows it.
type RouteInfo struct {
	Name     string        `json:"name"`
	Host     string        `json:"host"`
	Open     int64         `json:"open"`
	Backends []BackendInfo `json:"backends"`
}

// Overview is /dashboard.json: the page's state, and the history points
// after ?since= (Unix milliseconds).
type Overview struct {
	Now          time.Time   `json:"now"`
	Started      time.Time   `json:"started"`
	Open         int64       `json:"open"`
	Listen       string      `json:"listen"`
	Routes       []RouteInfo `json:"routes"`
	Certificates []CertInfo  `json:"certificates"`
	Points       []Point     `json:"points"`
	PollMS       int64       `json:"poll_ms"`
	SpanMS       int64       `json:"span_ms"`
}

func (o Options) overview(since int64) Overview {
	ov := Overview{Now: time.Now(), Started: o.Started, Open: o.Server.OpenTunnels(),
		Listen: cmp.Or(o.Listening(), &health.Listening{}).TLS, Routes: []RouteInfo{}, Certificates: []CertInfo{},
		Points: []Point{}, PollMS: PollEvery.Milliseconds(), SpanMS: HistorySpan.Milliseconds()}
	for _, rs := range o.Server.Status() {
		ri := RouteInfo{Name: rs.Name, Host: cmp.Or(rs.Host, "any"), Open: rs.Open, Backends: []BackendInfo{}}
		for _, b := range rs.Backends {
			bi := BackendInfo{Name: b.Name, Up: b.Up, Open: b.Conns, CheckErr: b.CheckErr}
			if !b.LastCheck.IsZero() {
				bi.LastCheck = &b.LastCheck
				bi.LatencyMS = float64(b.Latency.Microseconds()) / 1000
			}
			ri.Backends = append(ri.Backends, bi)
		}
		ov.Routes = append(ov.Routes, ri)
	}
	for _, c := range o.certificates() {
		ci := CertInfo{Names: c.Names, Fingerprint: c.Fingerprint, ACME: c.ACME, RenewalErrors: c.RenewalErrors,
			LastError: c.LastError, NotAfter: timeOrNil(c.NotAfter), NextRenewal: timeOrNil(c.NextRenewal)}
		if ci.NotAfter != nil {
			ci.DaysLeft = int(time.Until(c.NotAfter).Hours() / 24)
		}
		if c.LastError != "" {
			ci.LastErrorAt = timeOrNil(c.LastErrorAt)
		}
		ov.Certificates = append(ov.Certificates, ci)
	}
	if o.History != nil {
		ov.Points = o.History.Since(since)
	}
	return ov
}

// timeOrNil is t, or nil when it is zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (o Options) certificates() []tlsconf.Info {
	if o.Certificates == nil {
		return nil
	}
	return o.Certificates()
}

func (o Options) dashboardJSON(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, o.overview(since))
}

// dashboard is the page at /: what /dashboard.json and /tunnels say,
// rendered, with the tunnel table filtered and ordered as its query asks.
func (o Options) dashboard(w http.ResponseWriter, r *http.Request) {
	q, err := parseTunnelQuery(r)
	if err != nil {
		http.Error(w, "admin: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	page := selectTunnels(o.Server.Tunnels(), q, now)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but this listener's own script and style; no framing.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	v := r.URL.Query()
	pageTmpl.Execute(w, struct {
		Overview
		Query   struct{ Route, IP, IdleOver, Sort string }
		Tunnels TunnelPage
		Sorts   []string
	}{o.overview(now.UnixMilli()), struct{ Route, IP, IdleOver, Sort string }{q.route, v.Get("ip"), v.Get("idle_over"), q.sort}, page, sortNames()})
}

// sortNames are the orders the page's form offers.
func sortNames() []string {
	return []string{"id", "-id", "age", "-age", "idle", "-idle", "route", "client", "-bytes_in", "-bytes_out", "-messages_in", "-messages_out", "-throttled"}
}

func (o Options) asset(w http.ResponseWriter, r *http.Request) {
	if ext := path.Ext(r.URL.Path); ext != ".js" && ext != ".css" && ext != ".svg" {
		http.NotFound(w, r) // the page's template is not served as it is
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.StripPrefix("/assets/", http.FileServerFS(assetFiles)).ServeHTTP(w, r)
}
