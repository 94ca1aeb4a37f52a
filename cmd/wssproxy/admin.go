package main

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/proxy"
)

// defaultAdmin is the admin listener's address unless [admin] says
// otherwise: loopback only, so nothing but this machine sees it.
const defaultAdmin = config.DefaultAdmin

// adminConnections bounds the admin listener's connections (scrapers,
// probes, a status page or two), apart from max_client_connections; one
// client address may hold a quarter of them (proxy.Server.LimitListener).
const adminConnections = 32

// adminQuiet is how long an admin connection may wait for a request, the
// first or the next on a kept-alive connection, before it gives its place
// back: loopback scrapers and probes send at once.
const adminQuiet = 5 * time.Second

// sideTimeouts bound the connections of the plain-HTTP servers beside the
// proxy (redirect, admin). Nothing hijacks them, so every phase has a
// limit and an idle keep-alive connection an end. Zero fields: defaults.
type sideTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// sideServer is an http.Server for h with every timeout set; write is its
// default WriteTimeout (the longest a response may take).
func (r *runner) sideServer(h http.Handler, write time.Duration) *http.Server {
	t := r.timeouts
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cmp.Or(t.readHeader, 10*time.Second),
		ReadTimeout:       cmp.Or(t.read, 30*time.Second),
		WriteTimeout:      cmp.Or(t.write, write),
		IdleTimeout:       cmp.Or(t.idle, time.Minute),
	}
}

func checkAdmin(a config.Admin) error {
	if a.Listen == "" {
		return nil
	}
	if err := checkAddr(a.Listen); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(a.Listen)
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && !a.AllowRemote {
		return fmt.Errorf("%q is not a loopback address: the admin endpoints show routes and backends; use 127.0.0.1, or set allow_remote = true", a.Listen)
	}
	return nil
}

// adminMetrics are the process's own metrics, beside the proxy's.
type adminMetrics struct {
	reloads *prometheus.CounterVec
}

// newRegistry builds the metrics registry: the proxy's, the Go runtime's
// and the process's, certificate expiry, and reloads.
func (r *runner) newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	r.metrics = &adminMetrics{reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wssproxy_config_reloads_total", Help: "Configuration reloads, by result: success or failure."}, []string{"result"})}
	expiry := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wssproxy_certificate_expiry_timestamp_seconds",
		Help: "When each certificate file's certificate expires, per name it covers (Unix seconds)."}, []string{"host"})
	for _, c := range []prometheus.Collector{
		// go_gc_heap_live_bytes, the heap the last GC kept: what a leak grows.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.metrics.reloads, certCollector{r, expiry},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, r.srv.RegisterMetrics(reg)
}

type certCollector struct {
	r      *runner
	expiry *prometheus.GaugeVec
}

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { c.expiry.Describe(ch) }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	c.expiry.Reset()
	for _, info := range c.r.certs.Load().Certificates() {
		for _, name := range info.Names {
			c.expiry.WithLabelValues(name).Set(float64(info.NotAfter.Unix()))
		}
	}
	c.expiry.Collect(ch)
}

// readyTimeout bounds /readyz: under the 1 s a kubelet's probe waits by
// default, however many backends hang.
const readyTimeout = 800 * time.Millisecond

// adminHosts passes on requests whose Host is an IP address, localhost, or
// the host of the admin listen address, and answers others 421 Misdirected
// Request. A web page whose name an attacker re-points at 127.0.0.1 (DNS
// rebinding) would otherwise read the admin endpoints through the browser
// of anyone on this machine; its requests carry its own name. An IP
// address cannot be re-pointed. HTTP/1.0 requests without a Host pass.
func adminHosts(listen string, next http.Handler) http.Handler {
	own, _, _ := net.SplitHostPort(listen)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
		if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" && host != strings.ToLower(own) {
			http.Error(w, "admin: this listener does not answer for that Host", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// startAdmin serves the admin endpoints on the listener openListeners
// opened, if any.
func (r *runner) startAdmin(reg *prometheus.Registry) {
	if r.adminLn == nil {
		return
	}
	addr := r.fc.Admin.Listen
	routes := http.NewServeMux()
	routes.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	routes.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		r.listening.Load().SetHeaders(w.Header()) // for wssproxy health -env-listeners, and -t
		fmt.Fprintln(w, "ok")                     // the process is serving
	})
	routes.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if r.srv.Draining() { // from the drain's first moment: balancers stop sending
			http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), readyTimeout)
		defer cancel()
		if problems := r.srv.Ready(ctx); len(problems) > 0 {
			http.Error(w, "not ready:\n"+strings.Join(problems, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	routes.HandleFunc("GET /{$}", r.statusPage)
	mux := adminHosts(addr, routes)
	r.admin = r.sideServer(mux, time.Minute) // /readyz dials every route's backends
	r.admin.ReadHeaderTimeout = cmp.Or(r.timeouts.readHeader, adminQuiet)
	r.admin.IdleTimeout = cmp.Or(r.timeouts.idle, adminQuiet)
	srv, l := r.admin, r.adminLn
	// A bound of its own, outside max_client_connections: /metrics and
	// /healthz answer while the public listeners are full.
	bounded := r.srv.LimitListener(l, "admin", adminConnections)
	r.bg.Go(func() { r.fail(l, srv.Serve(bounded)) })
	r.log.Info("admin listening", "addr", l.Addr().String())
}

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"days": func(t time.Time) int { return int(time.Until(t).Hours() / 24) },
}).Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>wssproxy status</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}.down{color:#b00}.up{color:#070}</style>
<h1>wssproxy</h1>
<p>Listening on {{.Listen}} &middot; {{.Open}} tunnels open &middot; up since {{.Started.Format "2006-01-02 15:04:05"}} &middot; this page refreshes every 5 s</p>
<h2>Routes</h2>
<table><tr><th>route</th><th>host</th><th>open tunnels</th><th>backends</th></tr>
{{range .Routes}}<tr><td>{{.Name}}</td><td>{{or .Host "any"}}</td><td>{{.Open}}</td><td>{{range .Backends}}<span class="{{if .Up}}up{{else}}down{{end}}">{{.Name}} {{if .Up}}up{{else}}down{{end}} ({{.Conns}} open)</span><br>{{end}}</td></tr>
{{end}}</table>
<h2>Certificates</h2>
<table><tr><th>names</th><th>expires</th><th>days left</th><th>SHA-256</th></tr>
{{range .Certs}}<tr><td>{{range .Names}}{{.}} {{end}}</td><td>{{.NotAfter.Format "2006-01-02"}}</td><td>{{days .NotAfter}}</td><td><code>{{.Fingerprint}}</code></td></tr>
{{else}}<tr><td colspan="4">ACME certificates only (see the cache directory)</td></tr>{{end}}</table>
</html>
`))

func (r *runner) statusPage(w http.ResponseWriter, _ *http.Request) {
	routes := r.srv.Status()
	open := r.srv.OpenTunnels() // routes a reload removed may still have some
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	statusTmpl.Execute(w, struct {
		Listen  string
		Open    int64
		Started time.Time
		Routes  []proxy.RouteStatus
		Certs   any
	}{cmp.Or(r.listening.Load(), &health.Listening{}).TLS, open, r.started, routes, r.certs.Load().Certificates()})
}
