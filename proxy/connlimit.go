package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
)

// Client connections are bounded where they are accepted, so that the
// process never runs out of file descriptors: every accepted socket counts
// (a TLS handshake in progress, an idle keep-alive connection, a tunnel)
// until it is closed. Over the bound a new connection is closed at once;
// the ones already open (tunnels among them) go on. The TLS listener and
// the process's other public listeners ([redirect]) share
// max_client_connections, and each of their connections is one descriptor
// of the Server's descriptor budget as well (fdbudget.go), which backend
// connections share. The admin listener has a small bound of its own
// outside both, so /metrics and /healthz answer while the public
// listeners are full. Within that bound each client address has a share,
// a quarter of it, so that connections from one address (idle
// keep-alives, or connections that send nothing) cannot take every place:
// monitoring from another address still gets in. A refusal is counted in
// wssproxy_connections_refused_total and logged at warn, at most once a
// second per listener with the number refused since the line before.

// connBudget counts what the holders that share it hold: the connections
// of listeners, or the Server's descriptors.
type connBudget struct {
	open atomic.Int64
	max  func() int
	// share, if not nil and > 0: the most one client address may hold.
	share  func() int
	mu     sync.Mutex
	byAddr map[netip.Addr]int // with a share: the addresses holding any
}

// acquire takes a place for addr. held is the address the place is
// charged to, which release must be given back: addr when there is a
// share, else the zero Addr (so is a zero addr, which no share limits).
// overShare reports a refusal for addr's share rather than the whole
// bound. A full budget refuses before it looks at the address, and an
// address is entered only when admitted: refusals cost no memory.
//
// An attempt over its address's share never adds to open, even for a
// moment: a flood of them from one address (thousands of HTTP/2 streams at
// once) would otherwise fill the whole budget with attempts about to be
// refused, and refuse others' as over the budget.
func (b *connBudget) acquire(addr netip.Addr) (held netip.Addr, ok, overShare bool) {
	limit := int64(b.max())
	if b.open.Load() >= limit {
		return netip.Addr{}, false, false
	}
	share := b.shareLimit()
	if share <= 0 || !addr.IsValid() {
		if b.open.Add(1) > limit {
			b.open.Add(-1)
			return netip.Addr{}, false, false
		}
		return netip.Addr{}, true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byAddr[addr] >= share {
		return netip.Addr{}, false, true
	}
	if b.open.Add(1) > limit {
		b.open.Add(-1)
		return netip.Addr{}, false, false
	}
	if b.byAddr == nil {
		b.byAddr = make(map[netip.Addr]int)
	}
	b.byAddr[addr]++
	return addr, true, false
}

// shareLimit is the most one address may hold; 0: no share.
func (b *connBudget) shareLimit() int {
	if b.share == nil {
		return 0
	}
	return b.share()
}

// release gives back a place acquire charged to held.
func (b *connBudget) release(held netip.Addr) {
	b.open.Add(-1)
	if !held.IsValid() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byAddr[held]--; b.byAddr[held] <= 0 {
		delete(b.byAddr, held)
	}
}

// boundListener admits connections within its budget and, for the public
// listeners, the Server's descriptor budget.
type boundListener struct {
	net.Listener
	s         *Server
	name      string
	budget    *connBudget
	fds       bool // each connection is one of the Server's descriptors (s.fds)
	refused   *rateLog
	overShare *rateLog
	noFDs     *rateLog
	fdRefused *rateLog // over the descriptor budget, or one address's share of it
}

// limitListener bounds ln's connections; budget nil: the Server's shared
// one (max_client_connections), and the descriptor budget.
func (s *Server) limitListener(ln net.Listener, name string, budget *connBudget) net.Listener {
	l := &boundListener{Listener: ln, s: s, name: name, budget: budget}
	if budget == nil {
		l.budget, l.fds = &s.clients, true
		budget = l.budget
	}
	l.refused = &rateLog{emit: func(n int) {
		s.log.Warn("connections refused: over the connection bound", "listener", name, "refused", n,
			"open", budget.open.Load(), "limit", budget.max())
	}}
	l.overShare = &rateLog{emit: func(n int) {
		s.log.Warn("connections refused: over one address's share of the connection bound", "listener", name, "refused", n,
			"share", budget.shareLimit(), "limit", budget.max())
	}}
	l.noFDs = &rateLog{emit: func(n int) {
		s.log.Error("accept failed: out of file descriptors; lower max_client_connections or raise the open file limit",
			"listener", name, "failures", n, "open", budget.open.Load())
	}}
	l.fdRefused = &rateLog{emit: func(n int) {
		s.log.Warn("connections refused: over the descriptor budget, or one address's share of it", "listener", name, "refused", n,
			"descriptors", s.fds.open.Load(), "limit", s.fds.max(), "share", s.fds.shareLimit())
	}}
	s.cmu.Lock()
	s.rateLogs = append(s.rateLogs, l.refused, l.overShare, l.noFDs, l.fdRefused)
	s.cmu.Unlock()
	return l
}

// LimitListener bounds the connections of a listener the process serves
// besides Serve's: with reserve 0 they count against
// max_client_connections together with Serve's and ServeTLS's, and
// against the descriptor budget; with reserve > 0 the listener has a
// bound of its own, outside them, so that it answers while the others are
// full (the admin listener), and each client address at most a quarter of
// it. name labels its refusals in logs and metrics.
func (s *Server) LimitListener(ln net.Listener, name string, reserve int) net.Listener {
	var b *connBudget
	if reserve > 0 {
		share := max(1, reserve/4)
		b = &connBudget{max: func() int { return reserve }, share: func() int { return share }}
	}
	return s.limitListener(ln, name, b)
}

func (l *boundListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// net/http waits and tries again; a bound that leaves enough
			// descriptors keeps this from happening.
			if isOutOfFDs(err) {
				l.noFDs.add()
			}
			return nil, err
		}
		peer := peerAddr(c.RemoteAddr().String())
		held, ok, overShare := l.budget.acquire(peer)
		if ok && !l.fds {
			return &boundConn{Conn: c, budget: l.budget, addr: held}, nil
		}
		if ok {
			fd, fdOK := l.s.acceptFD(peer)
			if fdOK {
				return &boundConn{Conn: c, budget: l.budget, addr: held, fds: &l.s.fds, fd: fd}, nil
			}
			l.budget.release(held)
		}
		// Counted before the close, so that whoever sees the close sees
		// the count.
		switch {
		case ok:
			l.fdRefused.add()
		case overShare:
			l.overShare.add()
		default:
			l.refused.add()
		}
		if m := l.s.metrics.Load(); m != nil {
			m.connRefused.WithLabelValues(l.name).Inc()
		}
		c.Close()
	}
}

// boundConn gives its places back when it is closed, once. It is the
// connection under crypto/tls that the raw socket engine may read and
// write itself (sockio.Underlay): a tunnel's engine hooks it.
type boundConn struct {
	net.Conn
	budget *connBudget
	addr   netip.Addr  // what budget charged
	fds    *connBudget // the descriptor budget, if it counts the connection
	fd     netip.Addr  // what fds charged
	closed atomic.Bool
	// Set once, before the tunnel starts, by the tunnel's engine: the
	// connection's reads and writes from then on.
	hook sockio.Hook
}

func (c *boundConn) Write(p []byte) (int, error) {
	if c.hook != nil {
		return c.hook.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *boundConn) Read(p []byte) (int, error) {
	if c.hook != nil {
		return c.hook.Read(p)
	}
	return c.Conn.Read(p)
}

// SetHook makes boundConn a sockio.Underlay.
func (c *boundConn) SetHook(h sockio.Hook) { c.hook = h }

func (c *boundConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.budget.release(c.addr)
		if c.fds != nil {
			c.fds.release(c.fd)
		}
	}
	return err
}

// CloseWrite keeps the tunnel's half-close (a FIN after TLS close_notify).
func (c *boundConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SyscallConn keeps the socket reachable for the tunnel's engine.
func (c *boundConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// rateLog writes a line for a burst of events at most once a second: the
// first event starts the second, and the line counts every event in it.
type rateLog struct {
	emit    func(n int)
	mu      sync.Mutex
	pending int
	timer   *time.Timer
	stopped bool
}

func (r *rateLog) add() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending++
	if r.timer == nil && !r.stopped {
		r.timer = time.AfterFunc(time.Second, r.tick)
	}
}

func (r *rateLog) tick() {
	r.mu.Lock()
	n := r.pending
	r.pending = 0
	if n == 0 || r.stopped {
		r.timer = nil // quiet for a second: the next event starts anew
	} else {
		r.timer.Reset(time.Second)
	}
	r.mu.Unlock()
	if n > 0 {
		r.emit(n)
	}
}

// flush writes what is pending and stops the timer (at shutdown).
func (r *rateLog) flush() {
	r.mu.Lock()
	n := r.pending
	r.pending, r.stopped = 0, true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	if n > 0 {
		r.emit(n)
	}
}

func (s *Server) flushRateLogs() {
	s.cmu.Lock()
	logs := s.rateLogs
	s.cmu.Unlock()
	for _, r := range logs {
		r.flush()
	}
}
