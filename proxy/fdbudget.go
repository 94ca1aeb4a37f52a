package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// The descriptor budget: every socket the Server holds for a client or a
// backend is one descriptor of a budget derived from the open file limit
// (descriptorBudget: the limit less fdReserve), so that no mix of
// HTTP/1.1 connections and HTTP/2 streams can take the process to EMFILE.
// A client connection counts from accept to close (connlimit.go); a
// backend connection from before its dial until it is closed: a
// WebSocket's until its tunnel has ended (an admission holds it), a plain
// request's keep-alive connection until the transport closes it (fdConn).
// So a tunnel over HTTP/1.1 costs two, and a WebSocket over an HTTP/2
// stream one on top of its connection's: 100 streams on a connection are
// 101 descriptors, whatever h2_max_streams allows.
//
// One client address may hold max_descriptors_per_ip of them (default a
// quarter of the budget, as the admin listener gives an address a quarter
// of its reserve): 200 HTTP/2 connections of 100 streams each from one
// address take their share, and everyone else is served
// (TestDescriptorBudget in cmd/wssproxy). A tenth refused TestManyTunnels'
// 1,000 tunnels from one address (2,000 descriptors) at the test
// machine's limit of 20,000; a quarter leaves three quarters to everyone
// else, and a single address cannot starve them. A connection is charged to its
// TCP peer, unless the peer is in trusted_proxies or proxy_protocol_from
// (a load balancer carries many clients): then only to the budget. A
// backend connection is charged to the client's address as realip.go
// worked it out.
//
// Over the budget or the share: a new connection is closed at accept; a
// WebSocket handshake, over HTTP/1.1 or as an HTTP/2 stream, gets 503
// before any backend is dialed (Go's HTTP/2 server gives a handler no way
// to send REFUSED_STREAM: only its own stream limit does, and a handler's
// panic or deadline resets with INTERNAL_ERROR); a plain request the same.
// Each refusal is counted (wssproxy_requests_refused_total, kind
// limit-descriptors or limit-descriptors-per-ip; at accept,
// wssproxy_connections_refused_total) and logged at warn, a line a second
// at most. What fdReserve leaves out (listeners, the admin listener's 32
// connections, the log file, the poller, health checks, DNS) is never
// taken by clients, so /metrics and /healthz answer throughout.
//
// The proxy's own EMFILE or ENFILE on a backend dial (the reserve taken by
// something uncounted, or another process's share of the system's files)
// is its fault, not the backend's: 503 out-of-descriptors, logged at error
// a line a second at most, and neither a dial error nor a failure towards
// max_fails or the health checks.

// Refusal kinds of the descriptor budget.
const (
	kindFDs      = "limit-descriptors"
	kindFDsPerIP = "limit-descriptors-per-ip"
	kindOwnFDs   = "out-of-descriptors"
)

var (
	errNoFDs      = errors.New("proxy: over the descriptor budget")
	errNoFDsPerIP = errors.New("proxy: over one address's share of the descriptor budget (max_descriptors_per_ip)")
)

// isOutOfFDs reports whether err is the process (EMFILE) or the system
// (ENFILE) out of file descriptors.
func isOutOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// initFDs sets the descriptor budget up, and the rate-limited lines of
// its refusals.
func (s *Server) initFDs() {
	budget := descriptorBudget()
	s.fds.max = func() int { return budget }
	s.fds.share = func() int { return *s.state.Load().cfg.MaxDescriptorsPerIP }
	s.fdLogs = map[string]*addrLog{}
	for kind, emit := range map[string]func(n int, last string){
		kindFDs: func(n int, last string) {
			s.log.Warn("requests refused: over the descriptor budget", "refused", n, "last_client_ip", last,
				"descriptors", s.fds.open.Load(), "limit", budget)
		},
		kindFDsPerIP: func(n int, last string) {
			s.log.Warn("requests refused: over one address's share of the descriptor budget (max_descriptors_per_ip; behind a load balancer, list it in trusted_proxies or proxy_protocol_from)",
				"refused", n, "last_client_ip", last, "share", s.fds.shareLimit(), "limit", budget)
		},
		kindOwnFDs: func(n int, last string) {
			s.log.Error("backend dial failed: the proxy is out of file descriptors (its own fault, not the backend's); raise the open file limit",
				"failures", n, "last_client_ip", last, "descriptors", s.fds.open.Load(), "limit", budget)
		},
	} {
		l := &addrLog{}
		l.rateLog.emit = func(n int) { emit(n, *l.last.Load()) }
		s.fdLogs[kind] = l
		s.rateLogs = append(s.rateLogs, &l.rateLog)
	}
}

// addrLog is a rateLog whose line names the last client counted.
type addrLog struct {
	rateLog
	last atomic.Pointer[string]
}

func (l *addrLog) note(ip string) {
	l.last.Store(&ip)
	l.add()
}

// acceptFD takes a descriptor for a connection accepted from peer.
func (s *Server) acceptFD(peer netip.Addr) (held netip.Addr, ok bool) {
	if st := s.state.Load(); st.trusted.contains(peer) || st.proxyFrom.contains(peer) {
		peer = netip.Addr{} // many clients' connections: the budget's, no address's
	}
	held, ok, _ = s.fds.acquire(peer)
	return held, ok
}

// backendFD takes a descriptor for a backend connection for the client ip
// (errNoFDs or errNoFDsPerIP when refused). An ip that does not parse
// (none known) counts against the budget only.
func (s *Server) backendFD(ip string) (netip.Addr, error) {
	a, _ := netip.ParseAddr(ip)
	held, ok, overShare := s.fds.acquire(a.Unmap())
	switch {
	case ok:
		return held, nil
	case overShare:
		return netip.Addr{}, errNoFDsPerIP
	}
	return netip.Addr{}, errNoFDs
}

// fdRefusal is how a request is answered when err is the descriptor
// budget's refusal or the proxy's own EMFILE; ok false for other errors.
func fdRefusal(err error) (status int, kind, public string, ok bool) {
	switch {
	case errors.Is(err, errNoFDsPerIP):
		return http.StatusServiceUnavailable, kindFDsPerIP, "too many connections from this address", true
	case errors.Is(err, errNoFDs):
		return http.StatusServiceUnavailable, kindFDs, "too many connections", true
	case isOutOfFDs(err):
		return http.StatusServiceUnavailable, kindOwnFDs, "proxy out of resources", true
	}
	return 0, "", "", false
}

// fdConn is a backend connection of the plain-HTTP transport, which gives
// its descriptor back when it is closed, once.
type fdConn struct {
	net.Conn
	fds    *connBudget
	held   netip.Addr
	closed atomic.Bool
}

func (c *fdConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.fds.release(c.held)
	}
	return err
}
