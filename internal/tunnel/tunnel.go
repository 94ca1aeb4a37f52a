// Package tunnel is the WebSocket tunnel: two connections that completed
// an upgrade, the client's and the backend's, each served by the socket
// engine (internal/sockio), with bytes passed on unchanged. It follows
// frame boundaries (internal/wsframe) so that it can put frames of its
// own between them (pings, close frames), consume the answers to those,
// and end a tunnel with close frames rather than resets.
//
// A Tunnel knows nothing of routes, servers or logs: it is given a Policy
// (timeouts and limits), a Meter for the bytes it passes, and a function
// that is told, once, how it ended (End). Who owns what:
//
//   - Each side's pump (a sockio.Conn's Pump, on goroutines the engine
//     chooses) reads its side and forwards to the other, under the
//     other side's write lock (side.mu), where the proxy's own frames are
//     written too, at frame boundaries.
//   - The Tunnel decides when it has ended, in one place (sideEnded): when
//     both pumps have ended, it closes both connections, stops its timers
//     and calls done with the End. Nothing else ends it; everything else
//     (timers, Shut, Close, a dead peer) closes connections or sends close
//     frames, and the pumps then end.
package tunnel

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// WebSocket close codes the proxy sends (RFC 6455 §7.4.1; 1014 is from
// the IANA registry).
const (
	CloseGoingAway      = 1001
	CloseProtocol       = 1002
	ClosePolicy         = 1008 // policy violation: token_expired, rate_limited, closed by an operator
	CloseTooBig         = 1009
	CloseServiceRestart = 1012
	CloseBadGateway     = 1014
	closeNoStatus       = 1005 // a close frame without a code (never sent)
	closeAbnormal       = 1006 // closed without a close frame (never sent)
)

// DefaultCloseGrace is how long the proxy waits for a peer's close frame
// (or its end of stream) after sending its own, before it drops the
// connection.
const DefaultCloseGrace = 5 * time.Second

// Policy is what a tunnel is told of its route when it starts. Zero
// durations and sizes are off, except CloseGrace.
type Policy struct {
	PingInterval        time.Duration // keepalive towards the client
	BackendPingInterval time.Duration // keepalive towards the backend
	PingTimeout         time.Duration // silence after a ping that ends it
	SendTimeout         time.Duration // a write not finished in this long: that peer is not reading
	IdleTimeout         time.Duration // no data frame either way for this long
	MaxLifetime         time.Duration // give or take 10%, at random
	MaxMessageSize      int64         // payload bytes of one message (1009 past it)
	CloseGrace          time.Duration // 0: DefaultCloseGrace
	Limit               *RateLimit    // on what the client sends (ratelimit.go); nil: none
}

// Dir is a direction of the tunnel.
type Dir uint8

const (
	ToBackend Dir = iota // what the client sends ("in")
	ToClient             // what the backend sends ("out")
)

// Meter counts the bytes a tunnel forwards, per direction, as they pass
// (once per read, never per byte). It must not block.
type Meter interface {
	Forwarded(d Dir, n int64)
}

// Tunnel is one upgraded WebSocket connection.
type Tunnel struct {
	policy   Policy
	meter    Meter // nil: none
	client   *side // frames from it are masked; frames to it are not
	backend  *side // the reverse
	start    time.Time
	lastData atomic.Int64 // ns since start of the last data frame, either way

	// The first close frame of the tunnel: its code and who sent it.
	firstClose atomic.Pointer[closeInfo]

	lifted    chan struct{} // closed when the rate limits are lifted (nil: no limits)
	liftOnce  sync.Once
	throttled atomic.Int64 // ns the client's reads have been held by the limits

	mu       sync.Mutex // guards the fields below
	timers   []*time.Timer
	reason   Reason // why the proxy ended the tunnel, if it did
	shutting bool   // the proxy has sent (or queued) its close frames
	closed   bool   // both connections are closed
	ended    int    // pumps that have ended
	in, out  Half   // how they ended: client to backend, and back
	done     func(End)
}

type closeInfo struct {
	code int
	by   string
}

// New is the tunnel between client (the hijacked client connection, or
// an HTTP/2 stream) and backend (a connection that answered 101), made
// at start. Nothing runs until Start.
func New(p Policy, client, backend sockio.Conn, meter Meter, start time.Time) *Tunnel {
	if p.CloseGrace <= 0 {
		p.CloseGrace = DefaultCloseGrace
	}
	t := &Tunnel{policy: p, meter: meter, start: start}
	if p.Limit != nil {
		t.lifted = make(chan struct{})
	}
	t.client = newSide(t, "client", client, false)
	t.backend = newSide(t, "backend", backend, true)
	return t
}

// Start runs the tunnel: each side's pump starts on a goroutine of its
// own, after it has forwarded the bytes read ahead of the upgrade
// (fromClient, fromBackend: a client's first frames that came with its
// handshake; frames that came with the backend's 101). done is called
// once, when the tunnel has ended; both connections are closed by then.
func (t *Tunnel) Start(fromClient, fromBackend []byte, done func(End)) {
	t.StartBackend(fromBackend, done)
	go t.PumpClient(fromClient)
}

// StartBackend starts the tunnel with only the backend's pump on a
// goroutine of its own; the caller then runs PumpClient. For a client side
// whose caller has a goroutine waiting anyway (an HTTP/2 stream's handler,
// which must not return while the stream lives): an idle tunnel then holds
// one goroutine fewer.
func (t *Tunnel) StartBackend(fromBackend []byte, done func(End)) {
	t.done = done
	t.startTimers()
	go t.pump(t.backend, t.client, fromBackend)
}

// PumpClient copies the client to the backend (masked as they came) until
// the client's side ends; the tunnel may still be ending when it returns.
func (t *Tunnel) PumpClient(fromClient []byte) { t.pump(t.client, t.backend, fromClient) }

// IO is the engines that serve the two sides: "raw" or "portable" when
// both have the same, else the client's and the backend's,
// "raw/portable".
func (t *Tunnel) IO() string {
	c, b := t.client.conn.IO(), t.backend.conn.IO()
	if c == b {
		return c
	}
	return c + "/" + b
}

// other is the side of the tunnel that is not s.
func (t *Tunnel) other(s *side) *side {
	if s == t.client {
		return t.backend
	}
	return t.client
}

// pumper is one direction: src read, its frames followed, dst written.
type pumper struct {
	t        *Tunnel
	src, dst *side
	dir      Dir
	sc       wsframe.Scanner
	h        hooks
	n        int64                // bytes written to dst
	emit     func([]byte) error   // p.forward, bound once
	scanEmit func(b []byte) error // p.scanned, bound once
	timer    *time.Timer          // for throttles, made at the first
}

// pump copies src to dst until src ends (see pumper.end).
func (t *Tunnel) pump(src, dst *side, pending []byte) {
	p := &pumper{t: t, src: src, dst: dst, h: hooks{t: t, src: src, dst: dst}}
	if src == t.backend {
		p.dir = ToClient
	}
	p.scanEmit = p.scanned
	if len(pending) > 0 {
		if err := p.feed(pending); err != nil {
			p.end(err, nil)
			return
		}
	}
	src.conn.Pump(p.feed, p.end)
}

// feed forwards one read's bytes: the frame scanner finds the frames,
// the hooks decide about them, and what goes on is written to dst under
// its lock, where the proxy's own frames wait for a frame boundary.
func (p *pumper) feed(b []byte) error {
	src, dst := p.src, p.dst
	p.h.sawData = false
	before := p.n
	var err error
	for {
		dst.mu.Lock()
		var n int
		n, err = p.sc.ScanTo(b, &p.h, p.scanEmit)
		dst.midFrame = !p.sc.AtBoundary()
		dst.mu.Unlock()
		dst.flushPending()
		if n == len(b) || err != nil {
			break
		}
		// Paused before a data frame by the rate limits (ratelimit.go):
		// what came before it is out, and published (a read may hold
		// many messages let through one by one); no lock is held while
		// it waits.
		b = b[n:]
		p.publish(before)
		before, p.h.sawData = p.n, false
		p.throttle(p.h.wait)
	}
	p.publish(before)
	if p.h.srcDone {
		p.h.srcDone = false
		src.conn.Close() // src's close handshake is done (hooks.Control)
	}
	return err
}

// publish tells the meter, Stats, keepalive and idle_timeout what the
// pump has passed on since before: once per read, and before each
// throttle.
func (p *pumper) publish(before int64) {
	t, src := p.t, p.src
	if t.meter != nil {
		t.meter.Forwarded(p.dir, p.n-before)
	}
	now := int64(time.Since(t.start))
	src.lastFrame.Store(now)
	src.fwd.Store(p.n)
	if p.h.sawData {
		t.lastData.Store(now)
		src.lastMsg.Store(now)
		src.msgs.Store(p.h.msgs)
	}
}

// scanned writes a run of bytes the scanner passes on (dst.mu held).
func (p *pumper) scanned(b []byte) error {
	dst := p.dst
	if dst.closeSent {
		return nil // after a close frame nothing more may be sent
	}
	dst.closeSent = p.h.closing // this is the peer's close frame
	p.h.closing = false
	if dst.dropped.Load() {
		return nil // src's frames are read on, for its close reply
	}
	w, err := dst.write(b)
	p.n += int64(w)
	return err
}

// end is src's pump ending (sockio calls it once): how the tunnel goes on
// without it, then the record of it for sideEnded.
func (p *pumper) end(ferr, rerr error) {
	t, src := p.t, p.src
	src.ended.Store(true)
	h := Half{Bytes: p.n, Messages: p.h.msgs, Err: ferr}
	if ferr != nil {
		t.Close()
	} else {
		h.Err = t.pumpEnd(src, p.dst, &p.sc, rerr)
	}
	t.sideEnded(src, h)
}

// pumpEnd decides how the tunnel goes on when src has ended, and returns
// the error to record (nil for a clean end of stream):
//   - src sent a close frame and ended: a normal close. dst is half-closed
//     (TLS close_notify then FIN to the client; FIN to the backend) and
//     the other direction flows until it ends too.
//   - src vanished without a close frame: dst is sent a close frame (1014
//     Bad Gateway to the client, 1001 Going Away to the backend) and gets
//     CloseGrace to answer.
//   - the proxy had sent src a close frame, or closed it: src is done.
func (t *Tunnel) pumpEnd(src, dst *side, sc *wsframe.Scanner, rerr error) error {
	switch {
	case !sc.AtBoundary() && !isClosed(rerr):
		t.setReason(pick(src, ClientVanishedMidFrame, BackendVanishedMidFrame))
		t.Close() // dst's stream cannot be ended cleanly
	case src.proxyClosed.Load() || isClosed(rerr):
		// The proxy ended it, or closed everything.
	case src.sawClose.Load():
		// Half-closed, so that the other direction flows until it ends;
		// unless it has ended already: then both connections are closed
		// next (sideEnded), and the FIN would be sent twice.
		if !dst.ended.Load() {
			dst.closeWrite()
		}
	case dst.sawClose.Load():
		// dst has sent its close frame and src answered by dropping
		// TCP, as an endpoint may after a protocol error (RFC 6455
		// §7.1.1): dst sees the drop, as it would directly.
		t.Close()
	default:
		code, text := CloseGoingAway, "client went away"
		if src == t.backend {
			code, text = CloseBadGateway, "backend went away"
		}
		t.setReason(pick(src, ClientVanished, BackendVanished))
		t.noteClose(code, "proxy")
		t.after(t.policy.CloseGrace, t.Close) // armed before a write that may wait
		dst.send(closeFrame(code, text, dst.mask), true)
	}
	if rerr == io.EOF {
		rerr = nil
	}
	return rerr
}

// sideEnded records how src's pump ended. This is where the tunnel ends:
// at the second of the two, both connections are closed, the timers
// stopped and done called.
func (t *Tunnel) sideEnded(src *side, h Half) {
	t.mu.Lock()
	if src == t.client {
		t.in = h
	} else {
		t.out = h
	}
	t.ended++
	last := t.ended == 2
	t.mu.Unlock()
	if !last {
		return
	}
	t.Close()
	t.stopTimers()
	t.done(t.summary())
}

// Close drops both connections at once (the server's hard stop); the
// pumps end, and with them the tunnel.
func (t *Tunnel) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	t.liftLimits()
	t.client.conn.Close()
	t.backend.conn.Close()
}

// Shut ends the tunnel from the proxy's side: a close frame with
// toClient's and toBackend's code to each peer (0: just drop that
// connection), then CloseGrace for the answers. The first reason given
// stands.
func (t *Tunnel) Shut(r Reason, toClient, toBackend int, text string) {
	t.mu.Lock()
	if t.shutting || t.closed {
		t.mu.Unlock()
		return
	}
	t.shutting = true
	if t.reason == ByPeers {
		t.reason = r
	}
	t.mu.Unlock()
	t.liftLimits()
	t.noteClose(max(toClient, toBackend), "proxy")
	t.after(t.policy.CloseGrace, t.Close) // armed before any write that may wait
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

// ShutAfter is Shut, d from now (unless the tunnel has closed by then),
// on a goroutine of its own even when d is 0: a close frame's write may
// wait for a slow peer, and a drain shuts every tunnel at once.
func (t *Tunnel) ShutAfter(d time.Duration, r Reason, toClient, toBackend int, text string) {
	t.after(d, func() { t.Shut(r, toClient, toBackend, text) })
}

// deadPeer ends the tunnel for a side found dead (r says how): it is
// dropped, and the other side gets a close frame with text: 1014 to the
// client when the backend died, 1001 to the backend when the client did.
func (t *Tunnel) deadPeer(s *side, r Reason, text string) {
	toClient, toBackend := 0, CloseGoingAway
	if s == t.backend {
		toClient, toBackend = CloseBadGateway, 0
	}
	t.setReason(r)
	t.Shut(r, toClient, toBackend, text)
	// Already shutting (its close frame is what could not be written):
	// drop it all the same.
	s.proxyClosed.Store(true)
	s.drop()
}

func (t *Tunnel) setReason(r Reason) {
	t.mu.Lock()
	if t.reason == ByPeers {
		t.reason = r
	}
	t.mu.Unlock()
}

// noteClose records the tunnel's first close frame.
func (t *Tunnel) noteClose(code int, by string) {
	t.firstClose.CompareAndSwap(nil, &closeInfo{code: code, by: by})
}

// after runs f after d unless the tunnel has closed.
func (t *Tunnel) after(d time.Duration, f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.timers = append(t.timers, time.AfterFunc(d, f))
	}
}

func (t *Tunnel) stopTimers() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tm := range t.timers {
		tm.Stop()
	}
	t.timers = nil
}

// pick is c for the client's side, b for the backend's.
func pick[T any](s *side, c, b T) T {
	if s.isBackend {
		return b
	}
	return c
}

// isClosed reports errors that only mean the tunnel closed the connection.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// token is random bytes for the proxy's ping payloads.
func token() (k [8]byte) {
	rand.Read(k[:])
	return k
}
