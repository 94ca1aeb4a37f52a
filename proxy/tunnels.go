package proxy

// The Server's tunnels: each one started on what a handshake won
// (internal/tunnel does the rest), kept in a table while it is open, so
// that a drain or a hard stop reaches it, and logged, counted and released
// when it tells the Server it has ended.

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wssproxy/wssproxy/internal/sockio"
	"github.com/wssproxy/wssproxy/internal/tunnel"
)

// openTunnel is an open tunnel as the Server keeps it: the tunnel and what
// its access log line says of it.
type openTunnel struct {
	t         *tunnel.Tunnel
	id        uint64
	rt        *route
	up        *upstream
	adm       admission // released when it ends
	clientIP  string
	host      string
	path      string
	proto     string // the client's: HTTP/1.1, or HTTP/2.0 for a stream (RFC 8441)
	status    int    // what the client was answered: 101, or 200 over HTTP/2
	handshake time.Duration
	port      string      // the TCP peer's port, for the tunnel API
	auth      *authResult // nil: the route has no auth
	unlimit   func()      // gives back its share of the per-address rate limiter
}

// drainPlan is how the tunnels close when the server stops: the close code
// and reason both peers get, and the window the close frames are spread
// over (each tunnel's at a random moment in it).
type drainPlan struct {
	code     int
	text     string
	spread   time.Duration
	handover bool // a new process takes the listeners over
}

// runTunnel starts the tunnel between client (a hijacked connection or an
// HTTP/2 stream) and backend for the handshake r, which won adm.
// fromClient and fromBackend are bytes read ahead of the upgrade. For an
// HTTP/2 stream (r.ProtoMajor 2), whose handler must wait while the stream
// lives, the client's pump runs on the calling goroutine, and runTunnel
// returns when the client's side has ended.
func (s *Server) runTunnel(r *http.Request, ip string, rt *route, up *upstream, client, backend net.Conn,
	start time.Time, adm admission, fromClient, fromBackend []byte) {
	ot := &openTunnel{rt: rt, up: up, adm: adm, clientIP: ip, host: r.Host, path: r.URL.Path,
		proto: "HTTP/1.1", status: http.StatusSwitchingProtocols, handshake: time.Since(start), port: peerPort(r), auth: authOf(r)}
	if r.ProtoMajor == 2 {
		ot.proto, ot.status = r.Proto, http.StatusOK
	}
	var meter tunnel.Meter
	if rt.metrics != nil {
		meter = rt.metrics
	}
	policy := rt.policy(s.closeGrace)
	policy.Limit, ot.unlimit = rt.limits.limit(ip)
	ot.t = tunnel.New(policy, s.engine.Conn(client), s.engine.Conn(backend), meter, start)
	rt.open.Add(1)
	if m := rt.metrics; m != nil {
		m.open.Inc()
	}
	// Registered before it starts, so that a drain or a stop reaches it
	// whenever it comes; one that came before sees it here.
	s.tmu.Lock()
	s.nextTunnel++
	ot.id = s.nextTunnel
	s.live[ot.id] = ot
	plan, killed := s.plan, s.killed
	s.tmu.Unlock()
	inline := r.ProtoMajor == 2
	if inline {
		ot.t.StartBackend(fromBackend, func(e tunnel.End) { s.tunnelEnded(ot, e) })
	} else {
		ot.t.Start(fromClient, fromBackend, func(e tunnel.End) { s.tunnelEnded(ot, e) })
	}
	if ot.auth != nil && !ot.auth.expiry.IsZero() { // close_at_expiry
		ot.t.ShutAfter(time.Until(ot.auth.expiry), tunnel.TokenExpired, tunnel.ClosePolicy, tunnel.CloseGoingAway, "token expired")
	}
	switch {
	case killed:
		ot.t.Close()
	case plan != nil:
		s.drainTunnel(ot, plan)
	}
	if inline {
		ot.t.PumpClient(fromClient)
	}
}

// tunnelEnded is ot's end: it leaves the table, its line is logged and
// counted, and what its handshake held is released.
func (s *Server) tunnelEnded(ot *openTunnel, e tunnel.End) {
	s.tmu.Lock()
	delete(s.live, ot.id)
	s.addEnded(ot.rt.name, e) // in the same hold: the totals never go back
	s.tmu.Unlock()
	s.logTunnel(ot, e)
	if m := s.metrics.Load(); m != nil {
		m.tunnelsEnded.WithLabelValues(ot.rt.name, endLabel(e)).Inc()
	}
	ot.rt.open.Add(-1)
	if m := ot.rt.metrics; m != nil {
		m.open.Dec()
	}
	ot.adm.release()
	ot.unlimit()
}

// drainTunnels sends every open tunnel's peers plan's close frames (each
// at its moment in plan's spread); tunnels that start later get them as
// they start.
func (s *Server) drainTunnels(plan *drainPlan) {
	s.tmu.Lock()
	if s.plan != nil {
		s.tmu.Unlock()
		return // the first stop's plan holds
	}
	s.plan = plan
	open := s.openTunnels()
	s.tmu.Unlock()
	for _, ot := range open {
		s.drainTunnel(ot, plan)
	}
}

func (s *Server) drainTunnel(ot *openTunnel, p *drainPlan) {
	var d time.Duration
	if p.spread > 0 {
		d = rand.N(p.spread)
	}
	ot.t.ShutAfter(d, tunnel.Shutdown, p.code, p.code, p.text)
}

// killTunnels closes every tunnel's connections at once, and those of any
// that starts later.
func (s *Server) killTunnels() {
	s.tmu.Lock()
	s.killed = true
	open := s.openTunnels()
	s.tmu.Unlock()
	for _, ot := range open {
		go ot.t.Close() // a TLS close_notify may wait for a slow peer: not in turn
	}
}

// openTunnels lists the table (s.tmu held).
func (s *Server) openTunnels() []*openTunnel {
	open := make([]*openTunnel, 0, len(s.live))
	for _, ot := range s.live {
		open = append(open, ot)
	}
	return open
}

// logTunnel writes a tunnel's access log line: who, where, how long, how
// much, by which engine, and how it ended (the first close frame's code
// and sender; 1006 when nobody sent one).
func (s *Server) logTunnel(ot *openTunnel, e tunnel.End) {
	level, endedBy, detail := slog.LevelInfo, "", ""
	switch {
	case e.Reason != tunnel.ByPeers:
		endedBy, detail = "proxy", e.Reason.String()
		if e.Reason.Backend() {
			level = slog.LevelWarn
		}
	case e.Out.Err != nil && !isClosed(e.Out.Err):
		endedBy, detail = "backend", e.Out.Err.Error()
		level = slog.LevelWarn
	case e.In.Err != nil && !isClosed(e.In.Err):
		endedBy, detail = "client", e.In.Err.Error()
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return // at log_level warn, most tunnels: no attributes built
	}
	attrs := []any{
		"client_ip", ot.clientIP, "host", ot.host, "path", ot.path, "route", ot.rt.name, "backend", ot.up.name,
		"status", ot.status, "handshake_ms", float64(ot.handshake.Microseconds()) / 1000,
		"duration", e.Duration.Round(time.Millisecond),
		"bytes_in", e.In.Bytes, "bytes_out", e.Out.Bytes, "close_code", e.CloseCode, "closed_by", e.ClosedBy,
		"proto", ot.proto, "io", e.IO,
	}
	if e.Throttled > 0 {
		attrs = append(attrs, "throttled", e.Throttled.Round(time.Millisecond))
	}
	attrs = append(attrs, authAttrs(ot.auth)...)
	switch endedBy {
	case "proxy":
		attrs = append(attrs, "ended_by", endedBy, "reason", detail)
	case "backend", "client":
		attrs = append(attrs, "ended_by", endedBy, "error", detail)
	}
	s.log.Log(ctx, level, "tunnel closed", attrs...)
}

// endLabel is a tunnel's end in wssproxy_tunnels_ended_total's words.
func endLabel(e tunnel.End) string {
	switch e.Reason {
	case tunnel.ByPeers:
		if e.ClosedBy != "none" {
			return e.ClosedBy + "_close"
		}
		return "error"
	case tunnel.Shutdown:
		return "shutdown"
	case tunnel.ClientUnresponsive, tunnel.BackendUnresponsive, tunnel.ClientNotReading, tunnel.BackendNotReading:
		return "dead_peer"
	case tunnel.IdleTimeout, tunnel.MaxLifetime:
		return "timeout"
	case tunnel.AdminClose:
		return "admin"
	case tunnel.RateLimited:
		return "rate_limited"
	case tunnel.TokenExpired:
		return "token_expired"
	}
	return "error"
}

// policy is what the route tells its tunnels.
func (rt *route) policy(closeGrace time.Duration) tunnel.Policy {
	return tunnel.Policy{
		PingInterval:        rt.pingInterval,
		BackendPingInterval: rt.backendPingInterval,
		PingTimeout:         rt.pingTimeout,
		SendTimeout:         rt.sendTimeout,
		IdleTimeout:         rt.idleTimeout,
		MaxLifetime:         rt.maxLifetime,
		MaxMessageSize:      rt.maxMessageSize,
		CloseGrace:          closeGrace,
	}
}

// routeMetrics are one route's metrics, resolved once: per message, one
// atomic add on a counter.
type routeMetrics struct {
	open      prometheus.Gauge
	in, out   prometheus.Counter
	handshake prometheus.Observer
	throttled prometheus.Counter // wssproxy_rate_limited_total{action="throttle"}
	closed    prometheus.Counter // wssproxy_rate_limited_total{action="close"}
}

// Limited makes routeMetrics a tunnel.Limited.
func (m *routeMetrics) Limited(closed bool) {
	if closed {
		m.closed.Inc()
	} else {
		m.throttled.Inc()
	}
}

// Forwarded makes routeMetrics a tunnel.Meter.
func (m *routeMetrics) Forwarded(d tunnel.Dir, n int64) {
	if d == tunnel.ToBackend {
		m.in.Add(float64(n))
	} else {
		m.out.Add(float64(n))
	}
}

// isClosed reports errors that only mean the proxy closed the connection.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// startTunnel registers a tunnel; it returns false once Shutdown has begun.
func (s *Server) startTunnel() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.tunnels.Add(1)
	s.open.Add(1)
	return true
}

func (s *Server) endTunnel() {
	s.open.Add(-1)
	s.tunnels.Done()
}

// newEngine is the tunnels' socket engine, raw unless WSSPROXY_RAWIO=0
// says otherwise or the platform cannot; parkAfter 0 is its default.
func newEngine(log *slog.Logger, parkAfter time.Duration) *sockio.Engine {
	raw, known := sockio.RawFromEnv()
	if !known {
		log.Warn("WSSPROXY_RAWIO: unknown value, the raw engine stays on (0 turns it off)", "value", os.Getenv("WSSPROXY_RAWIO"))
	}
	return sockio.New(sockio.Options{Portable: !raw, ParkAfter: parkAfter})
}

// IOMode is the socket engine that serves tunnels on sockets, "raw" or
// "portable", and for portable why (for the startup log).
func (s *Server) IOMode() (io, why string) { return s.engine.Mode() }
