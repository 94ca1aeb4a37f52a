package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/wssproxy/wssproxy/internal/plaintls"
	"github.com/wssproxy/wssproxy/internal/tunnel"
)

// serveWebSocket forwards a client's opening handshake to the route's
// backend and, only when the backend answers 101, upgrades the client and
// runs the tunnel. Any other backend answer reaches the client as it is, so
// the backend stays in charge of authentication, subprotocols and
// extensions (RFC 6455 §4.2.2: all of them negotiate end to end).
//
// Over HTTP/2 (RFC 8441, h2stream.go) the handshake is an extended
// CONNECT: the backend is sent an HTTP/1.1 Upgrade of the proxy's own
// making, its 101 becomes the stream's 200, and the stream is the tunnel's
// client side.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, st *state, rt *route) {
	h2 := r.ProtoMajor == 2
	if rt.pool == nil {
		s.refuse(w, r, rt, http.StatusBadRequest, "not-websocket", "this path does not serve WebSockets", nil)
		return
	}
	check := checkHandshake
	if h2 {
		check = checkExtendedConnect
	}
	if herr := check(r); herr != nil {
		s.refuse(w, r, rt, herr.status, "bad-handshake", herr.reason, nil)
		return
	}
	if reason := rt.checkOrigin(r); reason != "" {
		s.refuse(w, r, rt, http.StatusForbidden, "origin", reason, nil)
		return
	}
	ip := clientIP(r)
	adm, status, kind, reason := s.admit(ip)
	if status != 0 {
		s.refuse(w, r, rt, status, kind, reason, nil)
		return
	}
	// Until the tunnel's goroutine takes it over (handOff), what adm holds
	// is released here.
	defer adm.release()
	var ok bool
	if r, ok = s.authorize(w, r, rt); !ok {
		return
	}
	start := time.Now()
	var accept string // over HTTP/2: the Sec-WebSocket-Accept the backend owes the proxy
	if h2 {
		r, accept = h2Upgrade(r)
	}
	b, err := s.backendHandshake(r, st, rt, ip)
	if errors.Is(err, errClientGone) {
		if s.ctx.Err() != nil { // every request's context ends with the proxy's
			s.refuse(w, r, rt, http.StatusServiceUnavailable, "shutting-down", "proxy is shutting down", err)
			return
		}
		s.clientGone(rt, ip, err)
		return
	}
	if err != nil {
		var be *backendError
		if !errors.As(err, &be) {
			be = &backendError{http.StatusBadGateway, "backend-handshake", "backend failed the handshake", err}
		}
		s.refuse(w, r, rt, be.status, be.kind, be.public, err)
		return
	}
	defer b.release()
	backend, up, br, resp := b.conn, b.up, b.br, b.resp
	if resp.StatusCode != http.StatusSwitchingProtocols {
		s.relayResponse(w, ip, rt, up, resp)
		backend.Close()
		return
	}
	if !hasToken(resp.Header, "Upgrade", "websocket") || !hasToken(resp.Header, "Connection", "upgrade") {
		backend.Close()
		s.refuse(w, r, rt, http.StatusBadGateway, "backend-bad-upgrade", "backend did not upgrade to WebSocket",
			fmt.Errorf("backend answered 101 with Upgrade %q, Connection %q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection")))
		return
	}
	if h2 && resp.Header.Get("Sec-Websocket-Accept") != accept {
		// Over HTTP/1.1 the client checks it; here the key was the proxy's.
		backend.Close()
		s.refuse(w, r, rt, http.StatusBadGateway, "backend-bad-upgrade", "backend did not upgrade to WebSocket",
			fmt.Errorf("backend answered 101 with Sec-WebSocket-Accept %q, want %q", resp.Header.Get("Sec-Websocket-Accept"), accept))
		return
	}
	if !adm.register(up) {
		backend.Close()
		s.refuse(w, r, rt, http.StatusServiceUnavailable, "shutting-down", "proxy is shutting down", nil)
		return
	}
	if h2 {
		// The stream's 200 carries the backend's 101 headers: the chosen
		// subprotocol and extensions, cookies.
		if err := answerH2(w, resp); err != nil {
			// The client left (a reset stream) as it was answered; the
			// backend has upgraded, so it is told as a tunnel would tell
			// it, not left to find its connection dropped.
			backend.SetWriteDeadline(time.Now().Add(rt.handshakeTimeout))
			backend.Write(tunnel.CloseFrame(tunnel.CloseGoingAway, "client went away", true))
			backend.Close()
			s.clientGone(rt, ip, err)
			return
		}
		if rt.metrics != nil { // from the stream's request, as the connection is older
			rt.metrics.handshake.Observe(time.Since(start).Seconds())
		}
		stream := newH2Stream(w, r)
		fromBackend := buffered(br)
		b.release() // not held while the stream lives
		// The client's pump runs here (runTunnel returns when the
		// client's side has ended). The stream lives while this handler
		// runs: it returns once the tunnel has closed the stream, which
		// may be before the tunnel is done with the backend.
		s.runTunnel(r, ip, rt, up, stream, backend, start, adm.handOff(), nil, fromBackend)
		<-stream.Done()
		return
	}

	client, crw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		backend.Close()
		s.log.Error("hijack client connection", "route", rt.name, "client_ip", ip, "error", err)
		return
	}
	client = unwrapConn(client) // the *tls.Conn itself: nothing between the tunnel and it
	// The 101 carries the backend's headers: Sec-WebSocket-Accept, the
	// chosen subprotocol and extensions, cookies.
	removeHopByHop(resp.Header)
	crw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	resp.Header.Write(crw)
	crw.WriteString("\r\n")
	if err := crw.Flush(); err != nil {
		client.Close()
		backend.Close()
		s.clientGone(rt, ip, err)
		return
	}
	if rt.metrics != nil {
		if at, ok := r.Context().Value(acceptedKey{}).(time.Time); ok {
			rt.metrics.handshake.Observe(time.Since(at).Seconds())
		}
	}
	// The tunnel runs on goroutines of its own and this handler returns:
	// net/http's goroutine for the connection then ends, and with it its
	// stack (grown by the TLS handshake), the request, the response and the
	// read buffer, which would otherwise stay for the tunnel's whole life.
	fromClient, fromBackend := buffered(crw.Reader), buffered(br)
	s.runTunnel(r, ip, rt, up, client, backend, start, adm.handOff(), fromClient, fromBackend)
}

// errClientGone marks a handshake its client ended (a reset connection
// or stream: net/http then cancels the request's context) while the proxy
// dialed its backend or waited for the backend's answer. The wait it cut
// short shows as the backend connection's "i/o timeout" (the deadline
// forwardHandshake sets when the client leaves) or a cancelled dial: the
// client's doing, not the backend's, which is neither blamed nor counted
// as failing.
var errClientGone = errors.New("proxy: client gone before upgrade")

// clientGone logs and counts a client that left during its handshake:
// debug, as every client hang-up, and
// wssproxy_requests_refused_total{kind="client-gone"}.
// Counted before it is logged: what reads the log line finds it counted.
func (s *Server) clientGone(rt *route, ip string, err error) {
	if m := s.metrics.Load(); m != nil {
		m.refused.WithLabelValues("client-gone").Inc()
	}
	s.log.Debug("client gone before upgrade", "route", rt.name, "client_ip", ip, "error", err)
}

// An admission is what a WebSocket handshake holds from its limit check
// until its tunnel ends: the descriptor of its backend connection
// (fdbudget.go), the limiter's slot for the client's address and, once
// registered, a tunnel counted by the Server (which Shutdown waits for)
// and a connection counted by its backend (least_conn). Exactly one owner
// releases it: the handshake, or after handOff the tunnel, when it has
// ended and closed its connections.
type admission struct {
	s    *Server
	ip   string
	held bool       // the limiter's slot for ip, and a descriptor
	fd   netip.Addr // what the descriptor is charged to
	up   *upstream  // registered: the Server's tunnel count and up.conns
}

// admit checks the limits for ip: the descriptor budget first (a full
// proxy takes no token from an address's handshake rate), then the
// limiter's (limits.go). status is 0 when admitted, else the refusal.
func (s *Server) admit(ip string) (adm admission, status int, kind, reason string) {
	fd, err := s.backendFD(ip)
	if err != nil {
		status, kind, reason, _ = fdRefusal(err)
		return admission{}, status, kind, reason
	}
	if status, kind, reason = s.limit.acquire(ip); status != 0 {
		s.fds.release(fd)
		return admission{}, status, kind, reason
	}
	return admission{s: s, ip: ip, held: true, fd: fd}, 0, "", ""
}

// register counts the tunnel about to start on up; false when the Server
// is shutting down.
func (a *admission) register(up *upstream) bool {
	if !a.s.startTunnel() {
		return false
	}
	up.conns.Add(1)
	a.up = up
	return true
}

// handOff moves what a holds to the admission it returns; a.release then
// does nothing.
func (a *admission) handOff() admission {
	t := *a
	*a = admission{}
	return t
}

// release gives back what a holds.
func (a *admission) release() {
	if !a.held {
		return
	}
	a.held = false
	a.s.limit.release(a.ip)
	a.s.fds.release(a.fd)
	if a.up != nil {
		a.up.conns.Add(-1)
		a.s.endTunnel()
		a.up = nil
	}
}

// buffered returns a copy of the bytes br has read ahead from its
// connection (nil if none). They belong to the tunnel and are forwarded
// before anything else.
func buffered(br *bufio.Reader) []byte {
	if br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// backendError is a failed backend handshake with the client's status.
type backendError struct {
	status       int
	kind, public string
	err          error
}

func (e *backendError) Error() string { return e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// backendAnswer is a backend's answer to a forwarded handshake: the
// connection, which backend it is, the reader holding what came after the
// response, and the response.
type backendAnswer struct {
	conn net.Conn
	up   *upstream
	br   *bufio.Reader // pooled: release gives it back
	resp *http.Response
}

// release gives the answer's reader back to its pool, once nothing reads
// it: what the tunnel needs of it has been copied (buffered), and the
// response's body, if any, read. The answer is left without one.
func (a *backendAnswer) release() {
	if a.br != nil {
		putReader(a.br)
		a.br = nil
	}
}

// Pools for the backend handshake's buffers: they are needed only until
// the backend's answer has been read (a few KiB per handshake otherwise
// allocated and collected).
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 2048) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// backendHandshake dials the route's backends in the pool's order until
// one connects (a failed dial sent nothing, so trying the next is always
// safe), forwards the client's handshake, and returns the backend's
// response. The connection has no deadline when it is returned. ip is the
// client's address. Its errors are *backendError, or errClientGone.
func (s *Server) backendHandshake(r *http.Request, st *state, rt *route, ip string) (backendAnswer, error) {
	var conn net.Conn
	var up *upstream
	var errs []error
	for _, u := range rt.pool.order(ip) {
		c, err := u.dial(r.Context(), st.cfg.DialTimeout, ip)
		if err == nil {
			rt.pool.succeeded(u)
			conn, up = c, u
			break
		}
		if r.Context().Err() != nil {
			return backendAnswer{}, fmt.Errorf("%w: dial backend %s: %w", errClientGone, u.name, err)
		}
		if status, kind, public, ok := fdRefusal(err); ok {
			// The proxy's own EMFILE: not the backend's failure, and no
			// other backend would fare better.
			return backendAnswer{}, &backendError{status, kind, public, fmt.Errorf("dial backend %s: %w", u.name, err)}
		}
		s.dialFailed(rt.pool, u)
		errs = append(errs, fmt.Errorf("dial backend %s: %w", u.name, plaintls.Explain(u.name, err)))
	}
	if conn == nil {
		err := errors.Join(errs...)
		if plaintls.Is(err) { // a wss:// backend that speaks ws://: say so, not "unavailable"
			return backendAnswer{}, &backendError{http.StatusBadGateway, "backend-not-tls", "backend does not speak TLS", err}
		}
		return backendAnswer{}, &backendError{http.StatusBadGateway, "backend-dial", "backend unavailable", err}
	}
	if len(errs) > 0 {
		s.log.Warn("backend dial failed; another answered", "route", rt.name, "backend", up.name, "error", errors.Join(errs...).Error())
	}
	conn, br, resp, err := s.forwardHandshake(r, rt, up, conn)
	return backendAnswer{conn, up, br, resp}, err
}

// forwardHandshake sends the client's handshake to a connected backend.
func (s *Server) forwardHandshake(r *http.Request, rt *route, up *upstream, conn net.Conn) (net.Conn, *bufio.Reader, *http.Response, error) {
	// Either deadline or the client going away ends the wait.
	conn.SetDeadline(time.Now().Add(rt.handshakeTimeout))
	stop := context.AfterFunc(r.Context(), func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: rt.targetPath(r.URL.Path), RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     r.Header.Clone(),
		Host:       r.Host,
	}
	if !rt.stripPath {
		req.URL.RawPath = r.URL.RawPath // keep the client's escaping
	}
	removeHopByHop(req.Header)
	req.Header.Del("Content-Length")
	rt.forwardHeaders(req.Header, r)
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // Request.Write adds Go's otherwise
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")

	fail := func(err error) (net.Conn, *bufio.Reader, *http.Response, error) {
		conn.Close()
		if r.Context().Err() != nil {
			return nil, nil, nil, fmt.Errorf("%w: backend %s handshake: %w", errClientGone, up.name, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil, nil, &backendError{http.StatusGatewayTimeout, "backend-timeout", "backend did not answer the handshake in time",
				fmt.Errorf("backend %s handshake: no answer within %v", up.name, rt.handshakeTimeout)}
		}
		return nil, nil, nil, &backendError{http.StatusBadGateway, "backend-handshake", "backend failed the handshake",
			fmt.Errorf("backend %s handshake: %w", up.name, err)}
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		return fail(err)
	}
	br := getReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		putReader(br)
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		conn.SetDeadline(time.Time{})
	}
	return conn, br, resp, nil
}

// relayResponse passes a backend's refusal (403, 400, 500…) to the client
// as it is, minus hop-by-hop headers. The backend connection still has the
// handshake deadline, which bounds the body. ip is the client's address.
func (s *Server) relayResponse(w http.ResponseWriter, ip string, rt *route, up *upstream, resp *http.Response) {
	defer resp.Body.Close()
	s.log.Info("backend refused handshake", "route", rt.name, "backend", up.name,
		"client_ip", ip, "status", resp.StatusCode)
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		if k == stsHeader && h[k] != nil {
			continue // the proxy's own (setHSTS) stands
		}
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
