package proxy

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics. Per-message work is one
// atomic add on a counter resolved when the route was compiled: no lock,
// no allocation, no label lookup.
type metrics struct {
	tunnelsOpen  *prometheus.GaugeVec
	tunnelsEnded *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	handshake    *prometheus.HistogramVec
	dialErrors   *prometheus.CounterVec
	tlsErrors    *prometheus.CounterVec
	backendUp    *prometheus.GaugeVec
	refused      *prometheus.CounterVec
	connRefused  *prometheus.CounterVec
	h2Refused    prometheus.Counter
	h2Full       prometheus.Counter
	rateLimited  *prometheus.CounterVec // ratelimit.go
}

// RegisterMetrics creates the proxy's metrics in reg. Call it before
// serving; without it the proxy keeps no metrics.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := &metrics{
		tunnelsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wssproxy_tunnels_open",
			Help: "WebSocket tunnels open now."}, []string{"route"}),
		tunnelsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_tunnels_ended_total",
			Help: "WebSocket tunnels ended, by why: client_close, backend_close, dead_peer, timeout, token_expired, shutdown, admin, rate_limited, error."}, []string{"route", "reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_tunnel_bytes_total",
			Help: "Bytes through tunnels: in is client to backend, out is backend to client."}, []string{"route", "direction"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wssproxy_handshake_duration_seconds",
			Help:    "From accepting the client's connection (TLS included) to sending it the backend's 101; over HTTP/2, from the stream's request to its 200.",
			Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"route"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_backend_dial_errors_total",
			Help: "Failed dials to a backend."}, []string{"backend"}),
		tlsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_tls_handshake_errors_total",
			Help: "Failed client TLS handshakes, by reason: unknown_sni, protocol_version, bad_certificate, eof, other."}, []string{"reason"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wssproxy_backend_up",
			Help: "1 while a backend is in rotation, 0 while health checks or failed dials keep it out."}, []string{"route", "backend"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_requests_refused_total",
			Help: "Requests the proxy answered with its own error, by kind (no-route, bad-handshake, origin, limit-... (limit-descriptors and limit-descriptors-per-ip for the descriptor budget), out-of-descriptors, backend-..., auth-jwt, auth-forward, auth-basic, auth-cert, auth-unavailable, auth-timeout, and net/http's own: header-too-large, bad-request, not-implemented, header-timeout), and handshakes the client left before its upgrade (client-gone)."}, []string{"kind"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_connections_refused_total",
			Help: "Client connections closed at accept, by listener: over max_client_connections or the descriptor budget (tls, http, redirect) or the admin listener's own bound (admin)."}, []string{"listener"}),
		h2Refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "wssproxy_h2_streams_refused_total",
			Help: "HTTP/2 streams refused (RST_STREAM) because their connection had h2_max_streams open: clients that ignore the limit the proxy advertises (browsers queue instead)."}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wssproxy_rate_limited_total",
			Help: "Message-rate limits at work on what clients send: throttle counts each time a client's reads were held, close each tunnel closed (1008)."}, []string{"route", "action"}),
		h2Full: prometheus.NewCounter(prometheus.CounterOpts{Name: "wssproxy_h2_connections_at_stream_limit_total",
			Help: "HTTP/2 connections that have had h2_max_streams streams open at once; a browser queues its further requests and WebSockets on such a connection."}),
	}
	for _, c := range []prometheus.Collector{m.tunnelsOpen, m.tunnelsEnded, m.bytes, m.handshake, m.dialErrors, m.tlsErrors, m.refused, m.connRefused, m.h2Refused, m.h2Full, m.rateLimited,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wssproxy_client_connections",
			Help: "Client connections open now that count against max_client_connections."},
			func() float64 { return float64(s.clients.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wssproxy_descriptors",
			Help: "Sockets the proxy holds now for clients and backends, counted against its descriptor budget."},
			func() float64 { return float64(s.fds.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wssproxy_descriptor_budget",
			Help: "The descriptor budget: the open file limit less what is kept for listeners, the admin listener, logs and health checks."},
			func() float64 { return float64(s.fds.max()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wssproxy_parked_sides",
			Help: "Tunnel sides whose pump has given up its goroutine while idle (the raw engine's parking; 0 with the portable engine)."},
			func() float64 { return float64(s.engine.Stats().Parked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wssproxy_connections_admitted",
			Help: "WebSocket connections counted against max_connections (handshakes in progress included)."},
			func() float64 { s.limit.mu.Lock(); defer s.limit.mu.Unlock(); return float64(s.limit.total) }),
		backendCollector{s, m.backendUp},
		newMessagesCollector(s), // tunnelapi.go
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	s.metrics.Store(m)
	s.resolveMetrics(s.state.Load())
	return nil
}

func (s *Server) resolveMetrics(st *state) {
	m := s.metrics.Load()
	if m == nil {
		return
	}
	for _, rt := range st.router.routes {
		rt.metrics = &routeMetrics{
			open:      m.tunnelsOpen.WithLabelValues(rt.name),
			in:        m.bytes.WithLabelValues(rt.name, "in"),
			out:       m.bytes.WithLabelValues(rt.name, "out"),
			handshake: m.handshake.WithLabelValues(rt.name),
		}
		if rt.limits != nil { // only routes with limits have the series
			rt.metrics.throttled = m.rateLimited.WithLabelValues(rt.name, "throttle")
			rt.metrics.closed = m.rateLimited.WithLabelValues(rt.name, "close")
		}
	}
}

// backendCollector reports each backend's rotation state at scrape time.
type backendCollector struct {
	s  *Server
	up *prometheus.GaugeVec
}

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) { c.up.Describe(ch) }

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	c.up.Reset()
	now := time.Now()
	for _, rt := range c.s.state.Load().router.routes {
		if rt.pool == nil {
			continue
		}
		for _, u := range rt.pool.ups {
			v := 1.0
			if u.down(now) {
				v = 0
			}
			c.up.WithLabelValues(rt.name, u.name).Set(v)
		}
	}
	c.up.Collect(ch)
}

// tlsErrorLog is net/http's error log: TLS handshake failures are counted
// by reason (and passed on to the debug log), everything else passed on.
type tlsErrorLog struct {
	s    *Server
	next func(string)
	mu   sync.Mutex
}

func (w *tlsErrorLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	if m := w.s.metrics.Load(); m != nil && strings.Contains(line, "TLS handshake error") {
		m.tlsErrors.WithLabelValues(tlsErrorReason(line)).Inc()
	}
	w.next(line)
	return len(p), nil
}

func tlsErrorReason(line string) string {
	switch {
	case strings.Contains(line, "no certificate for server name"), strings.Contains(line, "not in tls.acme.hosts"),
		strings.Contains(line, "server name component"), strings.Contains(line, "missing server name"):
		return "unknown_sni"
	case strings.Contains(line, "unsupported versions"), strings.Contains(line, "protocol version"):
		return "protocol_version"
	case strings.Contains(line, "bad certificate"), strings.Contains(line, "unknown certificate"),
		strings.Contains(line, "certificate"):
		return "bad_certificate"
	case strings.HasSuffix(line, "EOF"), strings.Contains(line, "connection reset"):
		return "eof"
	}
	return "other"
}

// Ready reports, for /readyz, each backend route that has no backend
// accepting connections now (a TCP or unix dial, no TLS). Every backend is
// dialed at once and ctx bounds the wait, so with a deadline in ctx the
// answer comes in time for a probe however many backends hang. Nil means
// ready.
func (s *Server) Ready(ctx context.Context) []string {
	routes := s.state.Load().router.routes
	ok := make(map[*backend]*atomic.Bool)
	var wg sync.WaitGroup
	for _, rt := range routes {
		if rt.pool == nil {
			continue
		}
		for _, u := range rt.pool.ups {
			if ok[u.backend] != nil {
				continue
			}
			answered := new(atomic.Bool)
			ok[u.backend] = answered
			wg.Go(func() { answered.Store(Reachable(ctx, u.network, u.addr) == nil) })
		}
	}
	wg.Wait()
	var problems []string
	for _, rt := range routes {
		if rt.pool == nil {
			continue
		}
		if !slices.ContainsFunc(rt.pool.ups, func(u *upstream) bool { return ok[u.backend].Load() }) {
			problems = append(problems, rt.name+": no backend accepts connections ("+rt.pool.String()+")")
		}
	}
	return problems
}

// Reachable dials addr on network ("tcp", "unix") and reports, as nil,
// that it accepts a connection now: the one check of a backend that Ready
// and Unreachable make.
func Reachable(ctx context.Context, network, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// BackendError is a backend, named as configured, and why it failed.
type BackendError struct {
	Backend string
	Err     error
}

// Unreachable checks, with Reachable, each backend of route i (from 0, in
// the order of the configuration being served) and returns those that do
// not accept a connection now. A static or handler route has none.
func (s *Server) Unreachable(ctx context.Context, i int) []BackendError {
	routes := s.state.Load().router.routes
	if i < 0 || i >= len(routes) || routes[i].pool == nil {
		return nil
	}
	var bad []BackendError
	for _, u := range routes[i].pool.ups {
		if err := Reachable(ctx, u.network, u.addr); err != nil {
			bad = append(bad, BackendError{Backend: u.name, Err: err})
		}
	}
	return bad
}

// RouteStatus is one route as the status page shows it.
type RouteStatus struct {
	Name     string
	Host     string
	Open     int64 // tunnels open now on routes of this name, before reloads too
	Backends []BackendStatus
}

// BackendStatus is one backend of a route.
type BackendStatus struct {
	Name  string
	Up    bool  // in rotation
	Conns int64 // tunnels and requests open to it, from any route
	// The route's last active check of it (health_interval): when it
	// ended (zero: none yet, or the route runs none), how long it took,
	// and its error ("" if it passed).
	LastCheck time.Time
	Latency   time.Duration
	CheckErr  string
}

// Status describes the routes now served.
func (s *Server) Status() []RouteStatus {
	var out []RouteStatus
	now := time.Now()
	for _, rt := range s.state.Load().router.routes {
		rs := RouteStatus{Name: rt.name, Host: rt.host + rt.hostSuffix, Open: rt.open.Load()}
		if rt.hostSuffix != "" {
			rs.Host = "*" + rt.hostSuffix
		}
		if rt.pool != nil {
			for _, u := range rt.pool.ups {
				rs.Backends = append(rs.Backends, u.status(now))
			}
		}
		out = append(out, rs)
	}
	return out
}
