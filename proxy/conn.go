package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is a client connection as net/http serves it: above TLS, so
// it sees the plaintext. It follows the request stream's framing
// (framing.go), and it notices the answers net/http writes itself, before
// any handler runs (431 for headers over max_header_bytes; 400 for a bad
// Host, Content-Length or header; 501 for an unknown Transfer-Encoding; a
// head not finished within read_header_timeout), so that they get the
// same log line and wssproxy_requests_refused_total count as the proxy's
// own refusals. A hijacked connection goes to its tunnel unwrapped
// (unwrapConn), and HTTP/2 connections are not followed: nothing here is
// on a tunnel's path.
type clientConn struct {
	net.Conn // a *tls.Conn, or what the listener accepted
	s        *Server

	h2       bool        // HTTP/2 (set at the handshake, before any read): not followed
	notHTTP  bool        // another ALPN protocol (acme-tls/1): no request is read
	off      atomic.Bool // hijacked or closed
	pending  atomic.Bool // counted in Server.pending: HTTP/1 and not yet hijacked or closed
	handling atomic.Bool // a handler has the request now (until StateIdle)

	h2Streams atomic.Int32 // HTTP/2: streams whose handler runs (h2conn.go)
	h2Full    atomic.Bool  // HTTP/2: it has had h2_max_streams of them

	mu        sync.Mutex // net/http's reads (its background read too) and a handler's claim
	fr        framing
	sinceIdle int  // bytes read since the last response
	answered  bool // net/http's own refusal or timeout was logged
}

// tlsClientConn is a clientConn over TLS. net/http finds the TLS state
// through ConnectionState and HandshakeContext (HTTP/2 included), as it
// does on a *tls.Conn.
type tlsClientConn struct{ clientConn }

func (c *tlsClientConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

func (c *tlsClientConn) HandshakeContext(ctx context.Context) error {
	tc := c.Conn.(*tls.Conn)
	err := tc.HandshakeContext(ctx)
	if err != nil {
		return err
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case "h2":
		c.h2 = true
		c.s.settle(&c.clientConn) // HTTP/2 has its own graceful end (GOAWAY)
	case "", "http/1.1", "http/1.0":
	default:
		// On a *tls.Conn net/http ends such a connection after the
		// handshake (it has no TLSNextProto for it); so it does here.
		c.notHTTP = true
	}
	return nil
}

// trackListener wraps each accepted connection in a clientConn.
type trackListener struct {
	net.Listener
	s *Server
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok {
		return &tlsClientConn{clientConn{Conn: c, s: l.s}}, nil
	}
	return &clientConn{Conn: c, s: l.s}, nil
}

// clientConnOf is the clientConn net/http was given as c, or nil.
func clientConnOf(c net.Conn) *clientConn {
	switch c := c.(type) {
	case *clientConn:
		return c
	case *tlsClientConn:
		return &c.clientConn
	}
	return nil
}

// unwrapConn is the connection under a hijacked clientConn: the tunnel
// reads and writes it directly.
func unwrapConn(c net.Conn) net.Conn {
	if cc := clientConnOf(c); cc != nil {
		return cc.Conn
	}
	return c
}

type connKey struct{}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.notHTTP {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if c.h2 || c.off.Load() {
		return n, err
	}
	c.mu.Lock()
	c.fr.feed(p[:n])
	c.sinceIdle += n
	// A head begun and not finished in time; not an idle keep-alive
	// connection, and not net/http ending its own background read.
	timedOut := err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.sinceIdle > 0 &&
		!c.handling.Load() && !c.answered
	if timedOut {
		c.answered = true
	}
	c.mu.Unlock()
	if timedOut {
		c.s.refusedByHTTP(c, http.StatusRequestTimeout, "header-timeout", "request headers not received in time")
	}
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	if !c.handling.Load() && !c.h2 && !c.off.Load() {
		c.noteAnswer(p)
	}
	return c.Conn.Write(p)
}

// CloseWrite keeps net/http's half-close before it closes a connection
// after a 431.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// noteAnswer logs and counts an error response that net/http wrote with
// no handler running: "HTTP/1.1 431 Request Header Fields Too Large…".
func (c *clientConn) noteAnswer(p []byte) {
	const prefix = "HTTP/1.1 "
	if len(p) < len(prefix)+3 || string(p[:len(prefix)]) != prefix || p[len(prefix)] < '4' {
		return
	}
	status, err := strconv.Atoi(string(p[len(prefix) : len(prefix)+3]))
	if err != nil {
		return
	}
	reason := p[len(prefix)+3:]
	if i := indexCRLF(reason); i >= 0 {
		reason = reason[:i]
	}
	c.mu.Lock()
	first := !c.answered
	c.answered = true
	c.mu.Unlock()
	if !first {
		return
	}
	kind := "bad-request"
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		kind = "header-too-large"
	case http.StatusNotImplemented:
		kind = "not-implemented"
	case http.StatusHTTPVersionNotSupported:
		kind = "bad-version"
	case http.StatusExpectationFailed:
		kind = "expectation-failed"
	}
	c.s.refusedByHTTP(c, status, kind, string(trimOWS(reason)))
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}

// refusedByHTTP logs and counts a request net/http refused before the
// proxy saw it: one line, like refuse's, with what is known (no host or
// path: the head was not parsed).
func (s *Server) refusedByHTTP(c net.Conn, status int, kind, reason string) {
	ip := c.RemoteAddr().String()
	if a := peerAddr(ip); a.IsValid() {
		ip = a.String()
	}
	s.log.Info("request refused", "status", status, "refused", kind, "reason", reason, "client_ip", ip)
	if m := s.metrics.Load(); m != nil {
		m.refused.WithLabelValues(kind).Inc()
	}
}

// connState follows net/http's view of a connection: a request is over
// (StateIdle) or the connection is no longer net/http's.
func (s *Server) connState(nc net.Conn, st http.ConnState) {
	c := clientConnOf(nc)
	if c == nil {
		return
	}
	switch st {
	case http.StateNew:
		s.pendingConn(c)
	case http.StateIdle:
		c.mu.Lock()
		c.sinceIdle = 0
		c.mu.Unlock()
		c.handling.Store(false)
	case http.StateHijacked, http.StateClosed:
		c.off.Store(true)
		s.settle(c)
	}
}

// pendingConn counts an HTTP/1 connection that may still bring a request:
// a drain waits for it to get its answer (see waitAnswered).
func (s *Server) pendingConn(c *clientConn) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	c.pending.Store(true)
	s.pending++
}

// settle stops counting c.
func (s *Server) settle(c *clientConn) {
	if !c.pending.CompareAndSwap(true, false) {
		return
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.pending--; s.pending == 0 && s.answered != nil {
		close(s.answered)
		s.answered = nil
	}
}

// waitAnswered waits, at most d or until ctx ends, for every HTTP/1
// connection already accepted to get its answer and close (keep-alives
// are off by then). net/http drops a request that arrives after its
// Shutdown has begun, without an answer; a connection accepted just before
// the listeners closed would see only EOF.
func (s *Server) waitAnswered(ctx context.Context, d time.Duration) {
	s.pmu.Lock()
	if s.pending == 0 {
		s.pmu.Unlock()
		return
	}
	if s.answered == nil {
		s.answered = make(chan struct{})
	}
	ch := s.answered
	s.pmu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkFraming runs first for every request. It claims the request's head
// from its connection's framing: a head with both Content-Length and
// Transfer-Encoding is refused with 400 and the connection closed (RFC
// 9112 §6.1, as nginx does). When the framing cannot vouch for the head,
// the request is served and the connection closed after it. It returns
// false when it has answered.
func (s *Server) checkFraming(w http.ResponseWriter, r *http.Request) bool {
	c, _ := r.Context().Value(connKey{}).(*clientConn)
	if c == nil || c.h2 || r.ProtoMajor != 1 {
		return true
	}
	c.handling.Store(true)
	c.mu.Lock()
	head, ok := c.fr.claim(r.Method, r.RequestURI)
	c.mu.Unlock()
	switch {
	case !ok:
		w.Header().Set("Connection", "close")
	case head.conflict():
		w.Header().Set("Connection", "close")
		s.refuse(w, s.state.Load().withClient(r), nil, http.StatusBadRequest, "framing",
			"both Content-Length and Transfer-Encoding", nil)
		return false
	}
	return true
}
