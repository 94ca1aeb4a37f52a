package proxy

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441). A browser that sees
// SETTINGS_ENABLE_CONNECT_PROTOCOL on the page's HTTP/2 connection opens
// its WebSockets as streams of that connection: a CONNECT request with
// :protocol = websocket, answered 200, whose DATA frames then carry the
// WebSocket frames both ways. There is no Sec-WebSocket-Key or -Accept and
// no 101, and the connection cannot be hijacked. The backend still speaks
// HTTP/1.1 Upgrade: the proxy is the WebSocket client there (a fresh key,
// the Accept checked), and the stream becomes a net.Conn (h2Stream), so the
// tunnel runs unchanged between it and the backend's socket.

// extendedConnect is whether this process's HTTP/2 server advertises
// extended CONNECT. Go 1.27 decides it once, from GODEBUG at start (read in
// net/http's init with this very test); Go 1.28 has
// http.HTTP2Config.EnableConnectProtocol instead (see doc.go).
var extendedConnect = strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1")

const websocketVersion = "13"

// isH2WebSocket reports whether r is an extended CONNECT for a WebSocket
// (RFC 8441 §4). net/http passes :protocol on as a header of that name.
func isH2WebSocket(r *http.Request) bool {
	return r.Method == http.MethodConnect && r.ProtoMajor == 2 && len(r.Header[":protocol"]) > 0
}

// checkExtendedConnect validates an extended CONNECT (RFC 8441 §5): the
// protocol is websocket and the version 13. Go's HTTP/2 server has reset
// one without :path (PROTOCOL_ERROR, counted by h2Refused); it does not
// check :scheme, and does not pass it on, so one without :scheme (RFC 8441
// §4 requires it) cannot be told from one with it here and is served.
func checkExtendedConnect(r *http.Request) *handshakeError {
	if p := r.Header[":protocol"]; len(p) != 1 || !strings.EqualFold(p[0], "websocket") {
		return &handshakeError{status: http.StatusBadRequest, reason: "extended CONNECT is served for :protocol websocket only"}
	}
	if v := r.Header["Sec-Websocket-Version"]; len(v) != 1 || v[0] != websocketVersion {
		return &handshakeError{status: http.StatusUpgradeRequired, reason: "Sec-WebSocket-Version must be 13"}
	}
	return nil
}

// checkH2Request refuses a request that carries :protocol without being a
// CONNECT: RFC 8441 §4 makes it malformed. Go's HTTP/2 server passes it on
// as a header of that name (and so would send it to a backend).
func checkH2Request(r *http.Request) *handshakeError {
	if r.Method != http.MethodConnect && r.ProtoMajor == 2 && len(r.Header[":protocol"]) > 0 {
		return &handshakeError{status: http.StatusBadRequest, reason: ":protocol is only allowed on a CONNECT (RFC 8441 §4)"}
	}
	return nil
}

// h2Upgrade is r as the HTTP/1.1 handshake the backend is sent: the
// client's headers with :protocol gone and a fresh Sec-WebSocket-Key, whose
// expected Sec-WebSocket-Accept it returns. forwardHandshake makes it a
// GET with Upgrade and Connection.
func h2Upgrade(r *http.Request) (*http.Request, string) {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	r2 := r.Clone(r.Context())
	delete(r2.Header, ":protocol")
	r2.Header.Set("Sec-Websocket-Key", key)
	return r2, acceptKey(key)
}

// acceptKey is the Sec-WebSocket-Accept answering key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// answerH2 sends the stream's 200 with the backend's 101 headers
// (subprotocol, extensions, cookies), less what belongs to HTTP/1.1's
// upgrade, and flushes it: the client may send frames from then on.
func answerH2(w http.ResponseWriter, resp *http.Response) error {
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		switch {
		case k == "Sec-Websocket-Accept" || k == "Content-Length":
		case k == stsHeader && h[k] != nil: // the proxy's own (setHSTS) stands
		default:
			h[k] = v
		}
	}
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}

// h2Stream is an HTTP/2 stream as the client's side of a tunnel: reads
// come from the request body, writes go out as DATA frames (flushed each
// time). Go's HTTP/2 server blocks a handler's write until the frames are
// out, within the stream's and the connection's flow-control windows, so
// a client that stops reading stops only its own stream's writes, and
// nothing is buffered beyond the tunnel's one read.
//
// The stream lives while its handler runs: Close ends it, and the handler,
// waiting on done, returns (END_STREAM; then RST_STREAM NO_ERROR if the
// client had not ended its half). After Close no call reaches the
// ResponseWriter, which must not be used once the handler has returned.
type h2Stream struct {
	body   io.ReadCloser
	w      io.Writer
	flush  func() error
	rc     *http.ResponseController
	local  net.Addr
	remote net.Addr
	done   chan struct{} // closed by Close: the handler may return

	wmu     sync.RWMutex // a Write holds it shared; Close waits for it
	closed  atomic.Bool
	writing atomic.Bool

	// The write deadline. Go's stream write deadline resets the stream
	// when it passes even if nothing is being written, so it is not used
	// as such: a timer of the stream's own resets it only when a write is
	// waiting, as a socket's deadline fails only writes.
	tmu      sync.Mutex // guards timer and the reset, against Close
	timer    *time.Timer
	deadline atomic.Int64 // unix ns; 0: none
	expired  atomic.Bool  // it passed while no write was waiting
	timedOut atomic.Bool  // it passed during a write: the stream was reset
}

func newH2Stream(w http.ResponseWriter, r *http.Request) *h2Stream {
	s := &h2Stream{body: r.Body, w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	s.flush = s.rc.Flush
	if f, ok := w.(interface{ FlushError() error }); ok {
		s.flush = f.FlushError // found once, not per write
	}
	s.local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		s.remote = net.TCPAddrFromAddrPort(ap)
	}
	return s
}

// Done is closed when the stream has been closed.
func (s *h2Stream) Done() <-chan struct{} { return s.done }

func (s *h2Stream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && (s.closed.Load() || s.timedOut.Load()) {
		err = net.ErrClosed // the proxy ended the stream, not the client
	}
	return n, err
}

func (s *h2Stream) Write(p []byte) (int, error) {
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	s.writing.Store(true) // before closed and expired are looked at: see Close and onDeadline
	defer s.writing.Store(false)
	switch {
	case s.closed.Load():
		return 0, net.ErrClosed
	case s.expired.Load():
		return 0, os.ErrDeadlineExceeded
	}
	n, err := s.w.Write(p)
	if err == nil {
		err = s.flush()
	}
	switch {
	case err == nil:
	case s.closed.Load():
		err = net.ErrClosed
	case s.timedOut.Load():
		// The stream's own send_timeout reset it (onDeadline): whatever
		// Go's server says of the reset, the peer was not reading.
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// Close ends the stream. A write blocked on flow control is failed by
// resetting the stream; Close returns once no write is under way.
func (s *h2Stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.body.Close() // a waiting Read returns
	s.tmu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.writing.Load() {
		s.rc.SetWriteDeadline(time.Unix(1, 0)) // RST_STREAM: the write returns
	}
	s.tmu.Unlock()
	s.wmu.Lock() // the write under way, if any, has returned; none starts
	s.wmu.Unlock()
	close(s.done)
	return nil
}

// CloseWrite: Go 1.27's HTTP/2 server cannot end a response (END_STREAM)
// while its handler still reads the request body, so an h2Stream has no
// half-close. The tunnel then closes the stream once the peer's close
// frame has passed (side.closeWrite).
func (s *h2Stream) CloseWrite() error { return errors.ErrUnsupported }

func (s *h2Stream) SetWriteDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	s.expired.Store(false)
	if t.IsZero() {
		s.deadline.Store(0)
		return nil
	}
	s.deadline.Store(t.UnixNano())
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if s.timer == nil {
		s.timer = time.AfterFunc(time.Until(t), s.onDeadline)
	} else {
		s.timer.Reset(time.Until(t))
	}
	return nil
}

// onDeadline runs when the write deadline may have passed.
func (s *h2Stream) onDeadline() {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	d := s.deadline.Load()
	if d == 0 || s.closed.Load() {
		return
	}
	if left := time.Until(time.Unix(0, d)); left > 0 {
		s.timer.Reset(left) // moved since
		return
	}
	s.expired.Store(true)
	if s.writing.Load() {
		// Resets the stream (RST_STREAM INTERNAL_ERROR); the waiting
		// write fails with os.ErrDeadlineExceeded, which the tunnel takes
		// for a peer not reading, and the read side ends as closed.
		s.timedOut.Store(true)
		s.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (s *h2Stream) SetReadDeadline(t time.Time) error {
	s.wmu.RLock() // Close waits: no call after the handler has returned
	defer s.wmu.RUnlock()
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.rc.SetReadDeadline(t)
}

func (s *h2Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

func (s *h2Stream) LocalAddr() net.Addr  { return s.local }
func (s *h2Stream) RemoteAddr() net.Addr { return s.remote }
