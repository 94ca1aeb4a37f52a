package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// WebSocket close codes the proxy sends (RFC 6455 §7.4.1; 1014 is from the
// IANA registry).
const (
	closeGoingAway      = 1001
	closeProtocol       = 1002
	closeTooBig         = 1009
	closeServiceRestart = 1012
	closeBadGateway     = 1014
	closeNoStatus       = 1005 // a close frame without a code (never sent)
)

// closeGrace is how long the proxy waits for a peer's close frame (or TCP
// close) after sending its own, before dropping the connection. A variable
// only so that tests can make it longer than they wait.
var closeGrace = 5 * time.Second

// tunnel is one upgraded WebSocket connection: the client's side, hijacked
// from the http.Server, and the backend's. Bytes pass unchanged; the tunnel
// follows frame boundaries so it can add frames of its own (pings, close
// frames) between them, consume the answers to those, and end a tunnel with
// close frames rather than resets.
type tunnel struct {
	rt       *route
	up       *upstream // the backend it was dialed to
	client   *side     // frames from it are masked; frames to it are not
	backend  *side     // the reverse
	clientIP string
	start    time.Time
	log      *slog.Logger

	lastData atomic.Int64 // ns since start of the last data frame, either way

	// The first close frame of the tunnel: its code and who sent it
	// ("client", "backend" or "proxy"), for the access log.
	firstClose atomic.Pointer[closeInfo]
	host, path string // of the handshake, for the access log
	proto      string // the client's: HTTP/1.1, or HTTP/2.0 for a stream (RFC 8441)
	status     int    // what the client was answered: 101, or 200 over HTTP/2
	handshake  time.Duration
	ended      *prometheus.CounterVec     // nil without metrics
	plan       *atomic.Pointer[drainPlan] // the server's: how to close at drain

	mu      sync.Mutex // guards the fields below
	timers  []*time.Timer
	reason  string // why the proxy ended the tunnel, if it did
	closed  bool
	shuttin bool // the proxy has sent its close frames
}

// side is one connection of a tunnel: what the proxy knows of the frames
// it reads from it, and the lock that orders what is written to it.
type side struct {
	name string
	conn net.Conn
	mask bool // frames written to it are masked (it is a server: the backend)
	t    *tunnel

	// Written by the opposite pump and by the proxy's own frames.
	mu        sync.Mutex
	midFrame  bool          // the output has stopped inside a frame
	closeSent bool          // a close frame was written to it: nothing may follow
	deadline  time.Duration // the write deadline set, as time since t.start

	dropped atomic.Bool // the proxy closed its connection: writes to it are moot
	hangUp  atomic.Bool // close its connection once the pending close frame is out

	pmu        sync.Mutex // guards pending
	pending    []byte     // the proxy's frames, waiting for a frame boundary
	pendClose  bool       // pending ends with a close frame
	hasPending atomic.Bool

	// Read by this side's pump.
	lastFrame   atomic.Int64 // ns since tunnel start of the last frame read
	sawClose    atomic.Bool  // it sent a close frame
	proxyClosed atomic.Bool  // the proxy itself sent it a close frame
	pingToken   [8]byte      // payload prefix of the proxy's pings
	pings       atomic.Uint32
}

func newSide(t *tunnel, name string, conn net.Conn, mask bool) *side {
	s := &side{name: name, conn: conn, mask: mask, t: t}
	rand.Read(s.pingToken[:])
	return s
}

// newTunnel is the tunnel between a hijacked client connection and a
// backend connection that answered 101.
func newTunnel(rt *route, up *upstream, client, backend net.Conn, start time.Time) *tunnel {
	t := &tunnel{rt: rt, up: up, start: start, proto: "HTTP/1.1", status: 101}
	t.client = newSide(t, "client", client, false)
	t.backend = newSide(t, "backend", backend, true)
	return t
}

// other is the side of the tunnel that is not s.
func (t *tunnel) other(s *side) *side {
	if s == t.client {
		return t.backend
	}
	return t.client
}

// write writes b to s within send_timeout (s.mu held): a peer that takes
// nothing for that long is not reading. The deadline is moved only when
// less than 7/8 of it is left, so a busy tunnel sets it about once per
// send_timeout/8, not per write; a write that makes no progress fails
// between 7/8 of send_timeout and all of it.
func (s *side) write(b []byte) (int, error) {
	if limit := s.t.rt.sendTimeout; limit > 0 {
		if now := time.Since(s.t.start); s.deadline-now < limit-limit/8 {
			s.deadline = now + limit
			s.conn.SetWriteDeadline(s.t.start.Add(s.deadline))
		}
	}
	n, err := s.conn.Write(b)
	if err != nil && s.dropped.Load() {
		err = nil // the proxy closed it on purpose
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.t.deadPeer(s, s.name+" not reading")
		err = nil // s is dropped; the tunnel goes on with the other side
	}
	return n, err
}

// drop closes s's connection on purpose: its writes fail quietly.
func (s *side) drop() {
	s.dropped.Store(true)
	s.conn.Close()
}

// direction is how one side's pump ended.
type direction struct {
	n   int64
	err error // nil for a clean end of stream
}

// run tunnels until both pumps have ended, then closes both connections
// and logs one line. ctx is the server's drain context: when it ends, both
// peers are sent 1001 Going Away. kill ends with the server's hard
// deadline: then both connections are closed.
func (t *tunnel) run(drain, kill context.Context, fromClient, fromBackend []byte) {
	stopDrain := context.AfterFunc(drain, func() {
		p := &drainPlan{code: closeGoingAway, text: "server shutting down"}
		if t.plan != nil && t.plan.Load() != nil {
			p = t.plan.Load()
		}
		shut := func() { t.shut("shutdown", p.code, p.code, p.text) }
		if d := p.delay(); d > 0 {
			t.after(d, shut)
		} else {
			shut()
		}
	})
	defer stopDrain()
	stopKill := context.AfterFunc(kill, t.close)
	defer stopKill()
	t.startTimers()
	t.rt.open.Add(1)
	defer t.rt.open.Add(-1)
	if m := t.rt.metrics; m != nil {
		m.open.Inc()
		defer m.open.Dec()
	}

	toBackend := make(chan direction, 1)
	go func() { toBackend <- t.copyToBackend(fromClient) }()
	out := t.copyFromBackend(fromBackend)
	in := <-toBackend
	t.close()
	t.stopTimers()
	t.logEnd(in, out)
	if t.ended != nil {
		t.ended.WithLabelValues(t.rt.name, t.endReason()).Inc()
	}
}

// copyToBackend forwards the client's frames, masked as they came.
func (t *tunnel) copyToBackend(pending []byte) direction {
	return t.pump(t.client, t.backend, pending)
}

// copyFromBackend forwards the backend's frames.
func (t *tunnel) copyFromBackend(pending []byte) direction {
	return t.pump(t.backend, t.client, pending)
}

// pump copies src to dst through a frame scanner until src ends, then
// decides how the tunnel goes on:
//   - src sent a close frame and ended: a normal close. dst is half-closed
//     (TLS close_notify then FIN to the client; FIN to the backend) and the
//     other direction flows until it ends too.
//   - src vanished without a close frame: dst is sent a close frame (1014
//     Bad Gateway to the client, 1001 Going Away to the backend) and gets
//     closeGrace to answer.
//   - the proxy had sent src a close frame: src is done.
func (t *tunnel) pump(src, dst *side, pending []byte) direction {
	var sc wsframe.Scanner
	h := &hooks{t: t, src: src, dst: dst}
	var n int64
	forward := func(b []byte) error {
		if dst.dropped.Load() {
			return nil // src's frames are read on, for its close reply
		}
		w, err := dst.write(b)
		n += int64(w)
		return err
	}
	var bytesMetric prometheus.Counter // client to backend is "in"
	if m := t.rt.metrics; m != nil {
		bytesMetric = m.out
		if src == t.client {
			bytesMetric = m.in
		}
	}
	feed := func(p []byte) error {
		h.sawData = false
		before := n
		dst.mu.Lock()
		err := sc.Scan(p, h, func(b []byte) error {
			if dst.closeSent {
				return nil // after a close frame nothing more may be sent
			}
			dst.closeSent = h.closing // this is the peer's close frame
			h.closing = false
			return forward(b)
		})
		dst.midFrame = !sc.AtBoundary()
		dst.mu.Unlock()
		dst.flushPending()
		if bytesMetric != nil {
			bytesMetric.Add(float64(n - before))
		}
		now := int64(time.Since(t.start))
		src.lastFrame.Store(now)
		if h.sawData {
			t.lastData.Store(now)
		}
		if h.closeReply {
			h.closeReply = false
			src.conn.Close() // the proxy's close handshake with src is done
		}
		return err
	}
	if len(pending) > 0 {
		if err := feed(pending); err != nil {
			t.close()
			return direction{n, err}
		}
	}
	rd := newReader(src.conn)
	defer rd.release()
	for {
		b, rerr := rd.read()
		if len(b) > 0 {
			if err := feed(b); err != nil {
				t.close()
				return direction{n, err}
			}
		}
		if rerr == nil {
			continue
		}
		switch {
		case !sc.AtBoundary() && !isClosed(rerr):
			t.setReason(src.name + " vanished mid-frame")
			t.close() // dst's stream cannot be ended cleanly
		case src.proxyClosed.Load() || isClosed(rerr):
			// The proxy ended it, or the other pump closed everything.
		case src.sawClose.Load():
			dst.closeWrite()
		case dst.sawClose.Load():
			// dst has sent its close frame and src answered by dropping
			// TCP, as an endpoint may after a protocol error (RFC 6455
			// §7.1.1): dst sees the drop, as it would directly.
			t.close()
		default:
			code, reason := closeGoingAway, "client went away"
			if src == t.backend {
				code, reason = closeBadGateway, "backend went away"
			}
			t.setReason(src.name + " vanished")
			t.noteClose(code, "proxy")
			t.after(closeGrace, t.close) // armed before a write that may wait
			dst.send(closeFrame(code, reason, dst.mask), true)
		}
		if rerr == io.EOF {
			rerr = nil
		}
		return direction{n, rerr}
	}
}

type closeInfo struct {
	code int
	by   string
}

// noteClose records the tunnel's first close frame.
func (t *tunnel) noteClose(code int, by string) {
	t.firstClose.CompareAndSwap(nil, &closeInfo{code: code, by: by})
}

// hooks are the pump's decisions about frames read from src.
type hooks struct {
	t          *tunnel
	src, dst   *side
	sawData    bool // a data frame began in this chunk
	closing    bool // the frame about to be forwarded is src's close frame
	closeReply bool // src answered the proxy's close frame
	scratch    [wsframe.MaxControlPayload]byte
}

func (h *hooks) Data(f wsframe.Header, msgLen uint64) bool {
	h.sawData = true
	if limit := h.t.rt.maxMessageSize; limit > 0 && msgLen > uint64(limit) {
		h.t.shut("message too big", closeTooBig, closeTooBig, "message too big")
		return false
	}
	return true
}

func (h *hooks) Control(f wsframe.Header, frame []byte) bool {
	switch f.Opcode {
	case wsframe.OpPong:
		p := wsframe.ControlPayload(h.scratch[:0], f, frame)
		if len(p) >= len(h.src.pingToken) && bytes.Equal(p[:len(h.src.pingToken)], h.src.pingToken[:]) {
			return false // the answer to the proxy's own ping
		}
	case wsframe.OpClose:
		h.src.sawClose.Store(true)
		code := closeNoStatus
		if p := wsframe.ControlPayload(h.scratch[:0], f, frame); len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		h.t.noteClose(code, h.src.name)
		if h.src.proxyClosed.Load() {
			h.closeReply = true
			return false // the answer to the proxy's own close
		}
		h.closing = true // forwarded next; then nothing more to dst
	}
	return true
}

// Oversized: a close frame over 125 bytes is invalid (RFC 6455 §5.5) and
// passed on for dst to refuse, but it is src's close all the same: src's
// end of stream after it is no vanishing.
func (h *hooks) Oversized(f wsframe.Header) {
	if f.Opcode == wsframe.OpClose {
		h.src.sawClose.Store(true)
		h.t.noteClose(closeNoStatus, h.src.name)
	}
}

// Malformed: a length with the top bit set (RFC 6455 §5.2) leaves the
// stream impossible to follow. Both peers get 1002; src's connection is
// closed once its close frame is out (§7.1.7), dst's close handshake runs
// as usual.
func (h *hooks) Malformed(wsframe.Header) {
	h.src.hangUp.Store(true)
	h.t.setReason("protocol error")
	h.t.shut("protocol error", closeProtocol, closeProtocol, "invalid frame length")
}

// send queues one of the proxy's own frames for s, to be written at the
// next frame boundary of s's output.
func (s *side) send(frame []byte, isClose bool) {
	s.pmu.Lock()
	s.pending = append(s.pending, frame...)
	if isClose {
		s.pendClose = true
		s.proxyClosed.Store(true)
	}
	s.pmu.Unlock()
	s.hasPending.Store(true)
	s.flushPending()
}

// flushPending writes the proxy's queued frames if s's output is at a frame
// boundary and nobody is writing; otherwise the writer calls it again after
// its write. It never waits for the lock, so a timer never blocks behind a
// slow peer.
func (s *side) flushPending() {
	for s.hasPending.Load() {
		if !s.mu.TryLock() {
			return // the holder flushes after it unlocks
		}
		if s.midFrame {
			s.mu.Unlock()
			return
		}
		s.pmu.Lock()
		p, isClose := s.pending, s.pendClose
		s.pending, s.pendClose = nil, false
		s.hasPending.Store(false)
		s.pmu.Unlock()
		if !s.closeSent && !s.dropped.Load() {
			s.write(p)
			s.closeSent = isClose
			if isClose && s.hangUp.Load() {
				s.drop()
			}
		}
		s.mu.Unlock()
	}
}

// closeWrite half-closes s after its peer's close frame has passed: for TLS
// a close_notify alert, then the TCP FIN. A connection that cannot
// half-close (an HTTP/2 stream, h2stream.go) is closed instead once s's own
// close frame has passed too, or closeGrace after: then both close frames
// are through and only the end of the stream was waited for.
func (s *side) closeWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.t.rt.sendTimeout; limit > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(limit))
	}
	if err := closeWrite(s.conn); errors.Is(err, errors.ErrUnsupported) {
		if s.sawClose.Load() {
			s.conn.Close()
		} else {
			s.t.after(closeGrace, func() { s.conn.Close() })
		}
	}
}

// closeFrame is a close frame with code and reason, masked if mask.
func closeFrame(code int, reason string, mask bool) []byte {
	payload := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	payload = append(payload, reason...)
	return wsframe.AppendFrame(nil, wsframe.OpClose, payload, maskKey(mask))
}

func maskKey(mask bool) *[4]byte {
	if !mask {
		return nil
	}
	var k [4]byte
	rand.Read(k[:])
	return &k
}

// shut ends the tunnel from the proxy's side: a close frame with
// toClient's and toBackend's code to each peer (0: just drop that
// connection), then closeGrace for the answers.
func (t *tunnel) shut(reason string, toClient, toBackend int, text string) {
	t.mu.Lock()
	if t.shuttin || t.closed {
		t.mu.Unlock()
		return
	}
	t.shuttin = true
	if t.reason == "" {
		t.reason = reason
	}
	t.mu.Unlock()
	t.noteClose(max(toClient, toBackend), "proxy")
	t.after(closeGrace, t.close) // armed before any write that may wait
	for _, x := range []struct {
		s    *side
		code int
	}{{t.client, toClient}, {t.backend, toBackend}} {
		if x.code == 0 {
			x.s.proxyClosed.Store(true)
			x.s.drop()
			continue
		}
		x.s.send(closeFrame(x.code, text, x.s.mask), true)
	}
}

// deadPeer ends the tunnel for a side found dead (why says how): it is
// dropped, and the other side gets a close frame: 1014 to the client when
// the backend died, 1001 to the backend when the client did.
func (t *tunnel) deadPeer(s *side, why string) {
	toClient, toBackend := 0, closeGoingAway
	if s == t.backend {
		toClient, toBackend = closeBadGateway, 0
	}
	t.setReason(why)
	t.shut(why, toClient, toBackend, why)
	// Already shutting (its close frame is what could not be written):
	// drop it all the same.
	s.proxyClosed.Store(true)
	s.drop()
}

func (t *tunnel) setReason(r string) {
	t.mu.Lock()
	if t.reason == "" {
		t.reason = r
	}
	t.mu.Unlock()
}

// after runs f after d unless the tunnel has ended.
func (t *tunnel) after(d time.Duration, f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.timers = append(t.timers, time.AfterFunc(d, f))
	}
}

func (t *tunnel) stopTimers() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tm := range t.timers {
		tm.Stop()
	}
	t.timers = nil
}

// close drops both connections.
func (t *tunnel) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	t.client.conn.Close()
	t.backend.conn.Close()
}

// logEnd writes the tunnel's access log line: who, where, how long, how
// much, and how it ended (the first close frame's code and sender; 1006
// when nobody sent one).
func (t *tunnel) logEnd(in, out direction) {
	t.mu.Lock()
	reason := t.reason
	t.mu.Unlock()
	code, by := 1006, "none" // RFC 6455 §7.1.5: closed without a close frame
	if c := t.firstClose.Load(); c != nil {
		code, by = c.code, c.by
	}
	attrs := []any{
		"client_ip", t.clientIP, "host", t.host, "path", t.path, "route", t.rt.name, "backend", t.up.name,
		"status", t.status, "handshake_ms", float64(t.handshake.Microseconds()) / 1000,
		"duration", time.Since(t.start).Round(time.Millisecond),
		"bytes_in", in.n, "bytes_out", out.n, "close_code", code, "closed_by", by, "proto", t.proto,
	}
	level := slog.LevelInfo
	switch {
	case reason != "":
		attrs = append(attrs, "ended_by", "proxy", "reason", reason)
		if strings.HasPrefix(reason, "backend ") {
			level = slog.LevelWarn
		}
	case out.err != nil && !isClosed(out.err):
		attrs = append(attrs, "ended_by", "backend", "error", out.err.Error())
		level = slog.LevelWarn
	case in.err != nil && !isClosed(in.err):
		attrs = append(attrs, "ended_by", "client", "error", in.err.Error())
		level = slog.LevelDebug
	}
	t.log.Log(context.Background(), level, "tunnel closed", attrs...)
}

// closeWrite half-closes c: for TLS a close_notify alert, then the TCP FIN
// (tls.Conn.CloseWrite sends only the alert). It returns the error of the
// last step; errors.ErrUnsupported for a connection that cannot half-close.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite()
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// isClosed reports errors that only mean the tunnel closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
