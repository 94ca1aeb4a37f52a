package main

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
	"github.com/wssproxy/wssproxy/tlsconf"
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
	if err := listenaddr.Check(a.Listen); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(a.Listen)
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && !a.AllowRemote && a.BasicAuth == "" {
		return fmt.Errorf("%q is not a loopback address: the admin endpoints show routes and backends; use 127.0.0.1, or set basic_auth or allow_remote = true", a.Listen)
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
	for _, c := range []prometheus.Collector{
		// go_gc_heap_live_bytes, the heap the last GC kept: what a leak grows.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.metrics.reloads, admin.CertExpiry(r.certificates), admin.ACMERenewals(r.certificates),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, r.srv.RegisterMetrics(reg)
}

func (r *runner) certificates() []tlsconf.Info { return r.certs.Load().Certificates() }

// startAdmin serves the admin endpoints on the listener openListeners
// opened, if any.
func (r *runner) startAdmin(reg *prometheus.Registry) {
	if r.adminLn == nil {
		return
	}
	r.history = admin.NewHistory(r.srv, reg, admin.SampleEvery)
	mux := admin.Handler(admin.Options{Listen: r.fc.Admin.Listen, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Server: r.srv, Listening: r.listening.Load, Certificates: r.certificates, Started: r.started, Log: r.log, History: r.history,
		BasicAuth: r.adminAuth.Load})
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
