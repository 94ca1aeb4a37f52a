package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// defaultAdmin is the admin listener's address unless [admin] says
// otherwise: loopback only, so nothing but this machine sees it.
const defaultAdmin = config.DefaultAdmin

// adminConnections bounds the admin listener's connections (scrapers,
// probes, a status page or two), apart from max_client_connections.
const adminConnections = 32

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
	for _, c := range []prometheus.Collector{
		// go_gc_heap_live_bytes, the heap the last GC kept: what a leak grows.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.metrics.reloads, admin.CertExpiry(func() []tlsconf.Info { return r.certs.Load().Certificates() }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, r.srv.RegisterMetrics(reg)
}

// readyTimeout bounds /readyz: under the 1 s a kubelet's probe waits by
// default, however many backends hang.
const readyTimeout = 800 * time.Millisecond

// startAdmin serves the admin endpoints. A busy port is logged, not fatal:
// the proxy matters more than its dashboard.
func (r *runner) startAdmin(reg *prometheus.Registry) {
	addr := r.fc.Admin.Listen
	if addr == "" {
		return
	}
	ln, err := r.listen("admin", "admin.listen", addr)
	if err != nil {
		r.log.Error("admin listener not started; the proxy runs without /metrics and health endpoints", "error", err)
		return
	}
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
	mux := admin.Hosts(addr, routes)
	r.admin = r.sideServer(mux, time.Minute) // /readyz dials every route's backends
	srv, l := r.admin, &listener{Listener: ln}
	r.adminLn = l
	// A bound of its own, outside max_client_connections: /metrics and
	// /healthz answer while the public listeners are full.
	bounded := r.srv.LimitListener(l, "admin", adminConnections)
	r.bg.Go(func() { r.fail(l, srv.Serve(bounded)) })
	r.log.Info("admin listening", "addr", ln.Addr().String())
}

func (r *runner) statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	admin.WriteStatus(w, admin.Status{Listen: cmp.Or(r.listening.Load(), &health.Listening{}).TLS,
		Open: r.srv.OpenTunnels(), Started: r.started, Routes: r.srv.Status(), Certs: r.certs.Load().Certificates()})
}
