package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Backends outlive configurations. A reload compiles new routes and pools,
// but a backend the new configuration names again is the same *backend:
// its open tunnels and requests (least_conn), its passive and active
// health, and its plain-HTTP keep-alive connections carry over. What no
// route names any more is dropped at the reload that stopped naming it:
// its idle connections are closed; tunnels still open on it keep their
// pointer, and their count still goes down when they end.

// backendKey is what makes two configured backends one: where it is, how
// it is reached (TLS, the name verified, the roots trusted) and whether
// its connections begin with a PROXY header, which a backend port either
// expects or refuses. The URL's path and the weight belong to the route.
type backendKey struct {
	network    string // "tcp" or "unix"
	addr       string // host:port, or the socket's path
	tls        bool
	serverName string
	roots      [sha256.Size]byte // backend_ca's contents; zero: the system's roots
	sendProxy  byte              // PROXY protocol version, 0: none
}

// backend is one backend server and what is known about it.
type backend struct {
	network   string
	addr      string
	tls       *tls.Config // nil: plain
	sendProxy byte
	conns     atomic.Int64 // open tunnels and requests, for least_conn

	mu        sync.Mutex // passive health
	fails     int
	failStart time.Time
	downUntil time.Time

	// plainHTTP carries the plain-HTTP requests of every route and every
	// configuration that names this backend, so its idle connections are
	// reused across reloads rather than left behind by each one.
	plainHTTP *http.Transport

	checks map[string]*checkState // active health, by check; guarded by registry.mu
}

// checkState is what one kind of active check (an HTTP GET of a path, or a
// WebSocket handshake on a path) found of a backend. Routes that check a
// backend the same way share it, and so does the next configuration: a
// reload does not bring a failing backend back into rotation.
type checkState struct {
	down atomic.Bool
	// The last check, for the dashboard: when it ended (Unix ns, 0: none
	// yet), how long it took, and its error ("" if it passed).
	last    atomic.Int64
	latency atomic.Int64
	lastErr atomic.Pointer[string]

	mu      sync.Mutex // the checkers of two configurations may overlap
	okRun   int
	failRun int
}

// registry holds what must outlive a configuration: the backends, and the
// routes' open tunnel counts (by route name, as the metric counts them).
type registry struct {
	mu        sync.Mutex
	backends  map[backendKey]*backend
	routeOpen map[string]*atomic.Int64
}

// backend returns the backend for key, made if new (roots is backend_ca's
// pool for a TLS backend, nil for the system's roots), and, when check is
// not "", its state for that active check.
func (s *Server) backend(key backendKey, roots *x509.CertPool, check string) (*backend, *checkState) {
	reg := &s.reg
	reg.mu.Lock()
	defer reg.mu.Unlock()
	b := reg.backends[key]
	if b == nil {
		b = &backend{network: key.network, addr: key.addr, sendProxy: key.sendProxy}
		if key.tls {
			b.tls = &tls.Config{ServerName: key.serverName, NextProtos: []string{"http/1.1"}, RootCAs: roots}
		}
		b.plainHTTP = s.newTransport(b)
		if reg.backends == nil {
			reg.backends = make(map[backendKey]*backend)
		}
		reg.backends[key] = b
	}
	if check == "" {
		return b, nil
	}
	cs := b.checks[check]
	if cs == nil {
		cs = &checkState{}
		if b.checks == nil {
			b.checks = make(map[string]*checkState)
		}
		b.checks[check] = cs
	}
	return b, cs
}

// routeOpen is the open tunnel count of the route called name.
func (s *Server) routeOpen(name string) *atomic.Int64 {
	reg := &s.reg
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := reg.routeOpen[name]
	if n == nil {
		n = new(atomic.Int64)
		if reg.routeOpen == nil {
			reg.routeOpen = make(map[string]*atomic.Int64)
		}
		reg.routeOpen[name] = n
	}
	return n
}

// sweep drops what no route of st refers to. A backend's idle connections
// are closed; the backend itself stays while tunnels or requests are open
// on it, so that a configuration naming it again finds their count.
func (s *Server) sweep(st *state) {
	names := make(map[string]bool)
	used := make(map[*backend]bool)
	checks := make(map[*checkState]bool)
	for _, rt := range st.router.routes {
		names[rt.name] = true
		if rt.pool == nil {
			continue
		}
		for _, u := range rt.pool.ups {
			used[u.backend] = true
			checks[u.check] = true
		}
	}
	reg := &s.reg
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for key, b := range reg.backends {
		for name, cs := range b.checks {
			if !checks[cs] {
				delete(b.checks, name)
			}
		}
		if used[b] {
			continue
		}
		b.plainHTTP.CloseIdleConnections()
		if b.conns.Load() == 0 {
			delete(reg.backends, key)
		}
	}
	for name, n := range reg.routeOpen {
		if !names[name] && n.Load() == 0 {
			delete(reg.routeOpen, name)
		}
	}
}

// closeIdle closes every backend's idle plain-HTTP connections.
func (s *Server) closeIdle() {
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	for _, b := range s.reg.backends {
		b.plainHTTP.CloseIdleConnections()
	}
}

// newTransport is b's plain-HTTP connection pool. It dials b whatever the
// request URL's host, with the dial_timeout of the configuration being
// served, covering TCP, the PROXY header and TLS.
func (s *Server) newTransport(b *backend) *http.Transport {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		ip := clientIPFrom(ctx)
		fd, err := s.backendFD(ip) // counted from before the dial until closed (fdbudget.go)
		if err != nil {
			return nil, err
		}
		c, err := b.dial(ctx, s.state.Load().cfg.DialTimeout, ip)
		if err != nil {
			s.fds.release(fd)
			return nil, err
		}
		return &fdConn{Conn: c, fds: &s.fds, held: fd}, nil
	}
	return &http.Transport{
		DialContext:    dial,
		DialTLSContext: dial, // https:// requests: b.dial does the handshake
		// A connection that began with one client's PROXY header must not
		// carry another client's request.
		DisableKeepAlives:     b.sendProxy != 0,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// dial connects to b: TCP or a unix socket, the PROXY header if b is sent
// one (for client), then TLS. timeout bounds all of it.
func (b *backend) dial(ctx context.Context, timeout time.Duration, client string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, b.network, b.addr)
	if err != nil {
		return nil, err
	}
	if b.sendProxy != 0 {
		if err := writeProxyHeader(conn, b.sendProxy, client); err != nil {
			conn.Close()
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
	}
	if b.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, b.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// passiveDown reports whether failed dials keep b out of rotation now.
func (b *backend) passiveDown(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Before(b.downUntil)
}
