// Package admin holds the pieces of wssproxy's admin listener that need
// no running proxy: the Host check that keeps DNS rebinding out, the
// status page, and the certificate-expiry metric. cmd/wssproxy wires them
// to the proxy.
package admin

import (
	"html/template"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// Hosts passes on requests whose Host is an IP address, localhost, or the
// host of the admin listen address, and answers others 421 Misdirected
// Request. A web page whose name an attacker re-points at 127.0.0.1 (DNS
// rebinding) would otherwise read the admin endpoints through the browser
// of anyone on this machine; its requests carry its own name. An IP
// address cannot be re-pointed. HTTP/1.0 requests without a Host pass.
func Hosts(listen string, next http.Handler) http.Handler {
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

// Status is what the status page shows.
type Status struct {
	Listen  string // the TLS listener's address
	Open    int64  // open tunnels, routes a reload removed included
	Started time.Time
	Routes  []proxy.RouteStatus
	Certs   []tlsconf.Info // certificate files; empty with ACME only
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

// WriteStatus writes the status page for s.
func WriteStatus(w io.Writer, s Status) error { return statusTmpl.Execute(w, s) }

// CertExpiry is wssproxy_certificate_expiry_timestamp_seconds, read from
// certs at every scrape so a renewed file shows at once.
func CertExpiry(certs func() []tlsconf.Info) prometheus.Collector {
	return certExpiry{certs, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wssproxy_certificate_expiry_timestamp_seconds",
		Help: "When each certificate file's certificate expires, per name it covers (Unix seconds)."}, []string{"host"})}
}

type certExpiry struct {
	certs  func() []tlsconf.Info
	expiry *prometheus.GaugeVec
}

func (c certExpiry) Describe(ch chan<- *prometheus.Desc) { c.expiry.Describe(ch) }

func (c certExpiry) Collect(ch chan<- prometheus.Metric) {
	c.expiry.Reset()
	for _, info := range c.certs() {
		for _, name := range info.Names {
			c.expiry.WithLabelValues(name).Set(float64(info.NotAfter.Unix()))
		}
	}
	c.expiry.Collect(ch)
}
