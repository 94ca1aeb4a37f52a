// Package admin is what wssproxy's admin listener answers: /metrics,
// /healthz, /readyz and a status page at /, behind a check of the Host
// header that keeps DNS rebinding out. cmd/wssproxy says what to show
// (Options) and serves the Handler on its admin listener, with its own
// bound of connections and timeouts.
package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/htpasswd"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// ReadyTimeout bounds /readyz: under the 1 s a kubelet's probe waits by
// default, however many backends hang.
const ReadyTimeout = 800 * time.Millisecond

// Options is what the endpoints report. Functions are called per request,
// so that they follow reloads.
type Options struct {
	// Listen is the admin listen address: its host is a Host the
	// endpoints answer for, besides IP addresses and localhost.
	Listen  string
	Metrics http.Handler
	Server  *proxy.Server
	// Listening is where the public listeners are (nil: not yet known),
	// told in /healthz's headers for wssproxy health.
	Listening    func() *health.Listening
	Certificates func() []tlsconf.Info
	Started      time.Time
	// History is the charts' last hour (nil: no charts).
	History *History
	// Log gets a line for every tunnel closed through the API, saying who
	// asked (nil: slog.Default()).
	Log *slog.Logger
	// BasicAuth is admin basic_auth's file as last loaded (nil: none):
	// every endpoint but /healthz then asks for a user of it (auth.go).
	BasicAuth func() *htpasswd.File
}

// Handler serves the admin endpoints.
func Handler(o Options) http.Handler {
	routes := http.NewServeMux()
	routes.Handle("GET /metrics", o.Metrics)
	routes.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		o.Listening().SetHeaders(w.Header()) // for wssproxy health -env-listeners, and -t
		fmt.Fprintln(w, "ok")                // the process is serving
	})
	routes.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if o.Server.Draining() { // from the drain's first moment: balancers stop sending
			http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), ReadyTimeout)
		defer cancel()
		if problems := o.Server.Ready(ctx); len(problems) > 0 {
			http.Error(w, "not ready:\n"+strings.Join(problems, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	routes.HandleFunc("GET /{$}", o.dashboard) // dashboard.go
	routes.HandleFunc("GET /dashboard.json", o.dashboardJSON)
	routes.HandleFunc("GET /assets/", o.asset)
	routes.HandleFunc("GET /tunnels", o.listTunnels) // tunnels.go
	routes.HandleFunc("GET /tunnels/{id}", o.getTunnel)
	routes.HandleFunc("POST /tunnels/{id}/close", o.closeTunnel)
	return hosts(o.Listen, o.guard(routes))
}

// hosts passes on requests whose Host is an IP address, localhost, or the
// host of the admin listen address, and answers others 421 Misdirected
// Request. A web page whose name an attacker re-points at 127.0.0.1 (DNS
// rebinding) would otherwise read the admin endpoints through the browser
// of anyone on this machine; its requests carry its own name. An IP
// address cannot be re-pointed. HTTP/1.0 requests without a Host pass.
func hosts(listen string, next http.Handler) http.Handler {
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

// CertExpiry is a collector of wssproxy_certificate_expiry_timestamp_seconds:
// when each certificate that certs lists expires, per name it covers.
func CertExpiry(certs func() []tlsconf.Info) prometheus.Collector {
	return certCollector{certs, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wssproxy_certificate_expiry_timestamp_seconds",
		Help: "When each certificate (file or ACME) expires, per name it covers (Unix seconds)."}, []string{"host"})}
}

type certCollector struct {
	certs  func() []tlsconf.Info
	expiry *prometheus.GaugeVec
}

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { c.expiry.Describe(ch) }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	c.expiry.Reset()
	for _, info := range c.certs() {
		if info.NotAfter.IsZero() {
			continue // an ACME host with no certificate yet
		}
		for _, name := range info.Names {
			c.expiry.WithLabelValues(name).Set(float64(info.NotAfter.Unix()))
		}
	}
	c.expiry.Collect(ch)
}
