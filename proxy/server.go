package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
	"github.com/wssproxy/wssproxy/internal/tunnel"
)

// ErrShuttingDown is returned by Serve after Shutdown.
var ErrShuttingDown = errors.New("proxy: shutting down")

// Server serves the routes of a Config on listeners the caller provides
// (usually TLS listeners from package tlsconf).
type Server struct {
	log     *slog.Logger
	http    *http.Server
	state   atomic.Pointer[state] // replaced whole by Reload
	limit   *limiter
	metrics atomic.Pointer[metrics] // nil until RegisterMetrics

	// ctx is the parent of every request; cancel ends them all.
	ctx    context.Context
	cancel context.CancelFunc
	// drain ends when shutdown (or a handover) begins.
	drain     context.Context
	stopDrain context.CancelFunc

	mu      sync.Mutex // guards closing and tunnels.Add against Shutdown's Wait
	closing bool
	tunnels sync.WaitGroup
	open    atomic.Int64

	// The tunnels (tunnels.go), served by engine (internal/sockio).
	engine     *sockio.Engine
	closeGrace time.Duration // 0: tunnel.DefaultCloseGrace (tests set it)
	tmu        sync.Mutex    // guards the fields below
	live       map[uint64]*openTunnel
	nextTunnel uint64
	plan       *drainPlan // set once the drain has begun: how tunnels close
	killed     bool       // the hard stop has come: tunnels close at once
	// What ended tunnels carried, by route name (tunnelapi.go); under tmu.
	endedTraffic map[string]*Traffic

	bg sync.WaitGroup // health checkers

	reloading sync.Mutex  // one Reload at a time
	reg       registry    // backends and tunnel counts, across reloads
	errorLog  *log.Logger // net/http's own messages, at debug level

	// h2WebSockets: extended CONNECT is served (RFC 8441). Fixed at New,
	// as Go 1.27 advertises it for the whole process or not at all.
	h2WebSockets bool
	h2MaxStreams int                    // h2_max_streams, fixed at New (h2conn.go)
	h2Logs       map[h2Refusal]*rateLog // Go's own refusals (h2conn.go)

	clients connBudget          // max_client_connections (connlimit.go)
	fds     connBudget          // every client and backend socket (fdbudget.go)
	fdLogs  map[string]*addrLog // its refusals, by kind; fixed at New

	pmu       sync.Mutex
	pending   int                               // HTTP/1 connections that may bring a request (conn.go)
	answered  chan struct{}                     // closed when pending reaches 0, while a drain waits
	listeners map[*trackListener]*drainListener // being served, guarded by pmu
	serving   sync.WaitGroup                    // Serve loops running: Add under pmu while not draining
	cmu       sync.Mutex
	rateLogs  []*rateLog // of every bounded listener, flushed at shutdown
}

// state is one generation of configuration: what new requests are served
// with. Tunnels keep the route they started with.
type state struct {
	ctx       context.Context // ends when the state is replaced or the server stops
	cancel    context.CancelFunc
	cfg       Config
	router    router
	dialer    net.Dialer
	trusted   prefixes // trusted_proxies
	proxyFrom prefixes // proxy_protocol_from
}

// New compiles cfg and returns a Server for it; the error joins a
// *FieldError for every problem (see Compile). A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	c, err := Compile(cfg)
	if err != nil {
		return nil, err
	}
	return c.Server(logger), nil
}

// Server returns a Server for what c compiled, as New does. A nil logger
// discards logs.
func (c *Compiled) Server(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: logger, limit: newLimiter(), live: make(map[uint64]*openTunnel)}
	s.engine = newEngine(logger, 0)
	if io, why := s.engine.Mode(); why != "" {
		logger.Info("tunnel io: "+io, "why", why)
	} else {
		logger.Info("tunnel io: " + io)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.drain, s.stopDrain = context.WithCancel(s.ctx)
	s.errorLog = log.New(&tlsErrorLog{s: s, next: func(line string) { logger.Debug(line) }}, "", 0)
	st := s.build(c)
	s.state.Store(st)
	s.startHealth(st)
	s.clients.max = func() int { return s.state.Load().cfg.MaxClientConnections }
	s.initFDs()
	s.warnFileLimit(st.cfg.MaxClientConnections)
	cfg := st.cfg
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc := clientConnOf(c); cc != nil {
				ctx = context.WithValue(ctx, connKey{}, cc)
			}
			return context.WithValue(ctx, acceptedKey{}, time.Now())
		},
		ConnState: s.connState,
		ErrorLog:  s.errorLog,
	}
	s.h2WebSockets = cfg.H2WebSockets() && extendedConnect
	s.h2MaxStreams = cfg.H2MaxStreams
	s.h2Logs = s.h2Refusals()
	s.http.HTTP2 = s.h2Config(&cfg) // with or without WebSockets: the limit, and Go's refusals logged
	switch {
	case s.h2WebSockets:
	case cfg.H2WebSockets():
		s.log.Warn("http2_websockets: extended CONNECT is off in this process (GODEBUG lacks http2xconnect=1 at start); WebSockets use HTTP/1.1")
	case extendedConnect:
		s.log.Warn("http2_websockets = false, but GODEBUG=http2xconnect=1 makes HTTP/2 advertise extended CONNECT; WebSockets over HTTP/2 get 405")
	}
	// Runs once Shutdown has closed the listeners.
	s.http.RegisterOnShutdown(func() {
		s.log.Info("stopped accepting", "open_tunnels", s.open.Load())
	})
	return s
}

// maxSendTimeout is the longest send_timeout of cfg's routes (defaults
// applied).
func maxSendTimeout(cfg *Config) time.Duration {
	var d time.Duration
	for _, r := range cfg.Routes {
		d = max(d, r.SendTimeout)
	}
	return d
}

// build makes a state of what c compiled, with the Server's backends.
func (s *Server) build(c *Compiled) *state {
	st := &state{cfg: c.cfg, trusted: c.trusted, proxyFrom: c.proxyFrom}
	st.ctx, st.cancel = context.WithCancel(s.ctx)
	st.dialer = net.Dialer{Timeout: st.cfg.DialTimeout}
	for _, p := range c.routes {
		rt := new(route)
		*rt = p.route
		rt.open = s.routeOpen(rt.name)
		rt.auth = rt.auth.bind(s, st.ctx)
		if len(p.ups) > 0 {
			rt.pool = s.newPool(p, rt)
		}
		switch r := p.src; {
		case r.Handler != nil:
			rt.http = r.Handler
		case r.Static != "":
			rt.http = staticHandler(rt, r.Static)
		default:
			rt.http = s.reverseProxy(rt, st.cfg.HSTS != "")
		}
		st.router.routes = append(st.router.routes, rt)
		st.router.authSlash = st.router.authSlash || rt.auth != nil && !rt.exact && len(rt.prefix) > 1 && strings.HasSuffix(rt.prefix, "/")
	}
	s.limit.configure(&st.cfg)
	s.resolveMetrics(st)
	return st
}

// acceptedKey holds when a request's connection was accepted.
type acceptedKey struct{}

// Reload compiles cfg and serves new requests with it: new routes,
// backends, timeouts and limits apply to connections from now on; open
// tunnels keep running with what they started with. Backends the new
// configuration names again keep their open connection counts, health and
// idle connections (registry.go). A cfg that does not compile changes
// nothing (the error is Compile's), and neither does a Reload once
// Shutdown or Close has begun (ErrShuttingDown). read_header_timeout and
// max_header_bytes belong to the listener and apply at the next start.
func (s *Server) Reload(cfg Config) error {
	c, err := Compile(cfg)
	if err != nil {
		return err
	}
	return s.Apply(c)
}

// Apply serves new requests with c, as Reload does; it fails only with
// ErrShuttingDown. It is Reload's second half, for a caller that compiles
// every part of its configuration before it changes any.
func (s *Server) Apply(c *Compiled) error {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	if s.isClosing() {
		return ErrShuttingDown
	}
	old := s.state.Load()
	st := s.build(c)
	// Under mu, so that Shutdown either waits for the new health checks
	// or comes first and none start.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		st.cancel()
		return ErrShuttingDown
	}
	s.state.Store(st)
	s.startHealth(st)
	s.mu.Unlock()
	old.cancel() // its health checks stop; its tunnels go on
	s.sweep(st)
	if st.cfg.ReadHeaderTimeout != old.cfg.ReadHeaderTimeout || st.cfg.MaxHeaderBytes != old.cfg.MaxHeaderBytes {
		s.log.Warn("read_header_timeout and max_header_bytes changes apply at the next start")
	}
	if st.cfg.H2WebSockets() != old.cfg.H2WebSockets() {
		s.log.Warn("http2_websockets changes apply at the next start")
	}
	return nil
}

// ServeTLS serves ln with TLS from config, reading PROXY protocol headers
// first when the configuration says so. Its connections count against
// max_client_connections. It returns as Serve does.
func (s *Server) ServeTLS(ln net.Listener, config *tls.Config) error {
	dl := newDrainListener(ln)
	if dl != nil {
		ln = dl
	}
	return s.serve(tls.NewListener(s.proxyListener(s.limitListener(ln, "tls", nil)), config), dl)
}

// Serve accepts connections on ln until Shutdown, within
// max_client_connections. It returns ErrShuttingDown after Shutdown, and
// other errors from ln.
func (s *Server) Serve(ln net.Listener) error {
	dl := newDrainListener(ln)
	if dl != nil {
		ln = dl
	}
	return s.serve(s.limitListener(ln, "http", nil), dl)
}

// serve serves ln; dl, if not nil, is its socket, whose queue a Shutdown
// takes before it closes (acceptdrain.go).
func (s *Server) serve(ln net.Listener, dl *drainListener) error {
	tl := &trackListener{Listener: ln, s: s}
	s.pmu.Lock()
	if s.Draining() { // stop has closed the listeners already
		s.pmu.Unlock()
		ln.Close()
		return ErrShuttingDown
	}
	if s.listeners == nil {
		s.listeners = make(map[*trackListener]*drainListener)
	}
	s.listeners[tl] = dl
	s.serving.Add(1)
	s.pmu.Unlock()
	defer func() {
		s.pmu.Lock()
		delete(s.listeners, tl)
		s.pmu.Unlock()
		s.serving.Done()
	}()
	err := s.http.Serve(tl)
	if errors.Is(err, http.ErrServerClosed) || s.Draining() { // stop closed the listener
		return ErrShuttingDown
	}
	return err
}

// OpenTunnels is the number of WebSocket tunnels now open.
func (s *Server) OpenTunnels() int64 { return s.open.Load() }

// dialFailed counts a failed dial to u for its pool's passive health and
// for the metrics.
func (s *Server) dialFailed(p *pool, u *upstream) {
	p.failed(u)
	if m := s.metrics.Load(); m != nil {
		m.dialErrors.WithLabelValues(u.name).Inc()
	}
}

// Draining reports whether Shutdown or Handover has begun: /readyz then
// answers 503, so that balancers stop sending new clients.
func (s *Server) Draining() bool { return s.drain.Err() != nil }

// UpgradeDrain is the configured upgrade_drain.
func (s *Server) UpgradeDrain() time.Duration { return s.state.Load().cfg.UpgradeDrain }

// Handover is Shutdown for a process being replaced by a new one that
// serves the same listeners (a binary upgrade): it stops accepting, closes
// every tunnel with 1012 Service Restart spread over upgrade_drain, and
// returns when the last tunnel has ended or ctx is done.
func (s *Server) Handover(ctx context.Context) error {
	cfg := s.state.Load().cfg
	return s.stop(ctx, &drainPlan{code: tunnel.CloseServiceRestart, text: "server restarting", spread: cfg.UpgradeDrain, handover: true})
}

// Shutdown stops accepting connections, sends every tunnel's client and
// backend a 1001 Going Away close frame (spread over close_spread), waits
// for the tunnels to end or ctx to be done, then closes what is left and
// waits for it. Hijacked connections are out of http.Server's reach, so
// tunnels are counted here.
func (s *Server) Shutdown(ctx context.Context) error {
	cfg := s.state.Load().cfg
	return s.stop(ctx, &drainPlan{code: tunnel.CloseGoingAway, text: "server shutting down", spread: *cfg.CloseSpread})
}

// stop drains the server: the listeners close, the tunnels close as plan
// says, and connections already accepted still get their answer before
// net/http's Shutdown, which would drop a request that arrives after it
// began. A handshake among them gets its tunnel, closed like the rest: a
// balancer sent it before it saw /readyz fail (or, on a handover, the new
// process is taking over), and a 503 would be a failed connection where a
// close frame is a reconnect.
func (s *Server) stop(ctx context.Context, plan *drainPlan) error {
	s.stopDrain()
	s.drainTunnels(plan)
	s.pmu.Lock()
	for tl, dl := range s.listeners {
		// A Shutdown takes what the kernel has queued first; a Handover
		// leaves it to the new process, which holds the same sockets.
		if plan.handover || dl == nil || !dl.stopAccepting() {
			tl.Close()
		}
	}
	s.pmu.Unlock()
	// Once every Serve loop has returned, every connection they accepted
	// has been counted (net/http reports StateNew before its next Accept);
	// one accepted as its listener closed would otherwise be missed, and
	// get only EOF from Shutdown. (Bounded: a listener whose Accept does
	// not return when closed is net/http's to close again.)
	served := make(chan struct{})
	go func() { s.serving.Wait(); close(served) }()
	select {
	case <-served:
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	s.http.SetKeepAlivesEnabled(false) // idle connections close now, the others after their answer
	s.waitAnswered(ctx, s.state.Load().cfg.ReadHeaderTimeout)
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed above: net/http closing it again is no failure
	}
	done := make(chan struct{})
	go func() {
		s.tunnels.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.killTunnels()
	s.cancel() // ends every request still open
	<-done
	s.bg.Wait()
	s.closeIdle()
	s.flushRateLogs()
	s.engine.Close()
	return err
}

// Close closes every listener, connection and tunnel at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.http.Close()
	s.killTunnels()
	s.cancel()
	s.tunnels.Wait()
	s.bg.Wait()
	s.closeIdle()
	s.flushRateLogs()
	s.engine.Close()
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
