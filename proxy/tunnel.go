package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
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

	pumps               atomic.Int32 // pumps still running (or parked)
	in, out             direction    // how they ended: client to backend, and back
	stopDrain, stopKill func() bool
	done                func()

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
	rd   *reader    // its pump's reads (reader.go)
	w    *rawWriter // writes to a plain socket (reader.go), or nil
	mask bool       // frames written to it are masked (it is a server: the backend)
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
	ended       atomic.Bool  // its pump has read all there is of it
	pingToken   [8]byte      // payload prefix of the proxy's pings
	pings       atomic.Uint32

	// Its pump's state between reads, which a parked pump keeps
	// (parker.go).
	feed    func([]byte) error
	finish  func(ferr, rerr error) direction
	park    parkState
	parkTok int32
}

func newSide(t *tunnel, name string, conn net.Conn, mask bool) *side {
	s := &side{name: name, conn: conn, mask: mask, t: t}
	s.rd = newReader(conn, &s.sawClose)
	if s.rd.under != nil && s.rd.under.w == nil {
		s.rd.under.w = newRawWriter(s.rd.raw)
	} else if s.rd.raw != nil && s.rd.tls == nil {
		s.w = newRawWriter(s.rd.raw)
	}
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
	var n int
	var err error
	if s.w != nil {
		n, err = s.w.write(b)
	} else {
		n, err = s.conn.Write(b)
	}
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
	s.closeConn()
}

// closeConn closes s's connection, from any goroutine, s's own pump
// included. A pump that reads its socket inside RawConn.Read holds the
// socket's read lock, and Close waits for that lock (for ever, from the
// pump itself); so then the socket is shut down, which ends its peer's
// stream and any write to it at once, and the Close is left to the pump,
// which stops reading at its next look and closes it (reader.go). Over
// TLS no close_notify goes first then: the proxy is dropping the peer, or
// the close handshake is over.
func (s *side) closeConn() {
	if s.rd.raw != nil {
		s.rd.closeWanted.Store(true)
		if s.rd.inRaw.Load() {
			s.rd.shutdown()
			return
		}
		if unpark(s) {
			// Parked: nobody reads it, so this goroutine takes its pump
			// over, to find it closed and end.
			s.conn.Close()
			go s.t.pumpLoop(s)
			return
		}
	}
	s.conn.Close()
}

// direction is how one side's pump ended.
type direction struct {
	n   int64
	err error // nil for a clean end of stream
}

// run starts the tunnel: its pumps, on the calling goroutine and on a
// second one, which may park (parker.go) and resume on others. When both
// have ended, both connections are closed, one line is logged and done is
// called. ctx is the server's drain context: when it ends, both
// peers are sent 1001 Going Away. kill ends with the server's hard
// deadline: then both connections are closed.
func (t *tunnel) run(drain, kill context.Context, fromClient, fromBackend []byte, done func()) {
	t.stopDrain = context.AfterFunc(drain, func() {
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
	t.stopKill = context.AfterFunc(kill, t.close)
	t.done = done
	t.startTimers()
	t.rt.open.Add(1)
	if m := t.rt.metrics; m != nil {
		m.open.Inc()
	}
	t.pumps.Store(2)
	go t.pump(t.client, t.backend, fromClient) // copies to the backend, masked as they came
	t.pump(t.backend, t.client, fromBackend)
}

// pumpEnded records how src's pump ended; the last of the two ends the
// tunnel: both connections closed, its timers stopped, its line logged,
// and done called.
func (t *tunnel) pumpEnded(src *side, d direction) {
	if src == t.client {
		t.in = d
	} else {
		t.out = d
	}
	if t.pumps.Add(-1) > 0 {
		return
	}
	t.close()
	t.stopTimers()
	t.logEnd(t.in, t.out)
	if t.ended != nil {
		t.ended.WithLabelValues(t.rt.name, t.endReason()).Inc()
	}
	t.stopKill()
	t.stopDrain()
	t.rt.open.Add(-1)
	if m := t.rt.metrics; m != nil {
		m.open.Dec()
	}
	if t.done != nil {
		t.done()
	}
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
func (t *tunnel) pump(src, dst *side, pending []byte) {
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
			src.closeConn() // the proxy's close handshake with src is done
		}
		return err
	}
	src.feed = feed
	src.finish = func(ferr, rerr error) direction {
		src.ended.Store(true)
		if src.rd.closeWanted.Load() {
			src.conn.Close() // left to this pump by closeConn
			if src.rd.under != nil {
				src.rd.under.Close() // crypto/tls may have closed before: the socket
			}
		}
		if ferr != nil {
			t.close()
			return direction{n, ferr}
		}
		return t.pumpEnd(src, dst, &sc, n, rerr)
	}
	if len(pending) > 0 {
		if err := feed(pending); err != nil {
			t.pumpEnded(src, src.finish(err, nil))
			return
		}
	}
	t.pumpLoop(src)
}

// pumpLoop reads src until it ends, or until it parks: then this goroutine
// ends, and the parker (or closeConn) calls pumpLoop again on another.
func (t *tunnel) pumpLoop(src *side) {
	for {
		ferr, rerr := src.rd.run(src.feed)
		if rerr == errParked {
			if park(src) {
				return
			}
			continue
		}
		t.pumpEnded(src, src.finish(ferr, rerr))
		return
	}
}

// pumpEnd is how the tunnel goes on when src has ended (see pump).
func (t *tunnel) pumpEnd(src, dst *side, sc *wsframe.Scanner, n int64, rerr error) direction {
	switch {
	case !sc.AtBoundary() && !isClosed(rerr):
		t.setReason(src.name + " vanished mid-frame")
		t.close() // dst's stream cannot be ended cleanly
	case src.proxyClosed.Load() || isClosed(rerr):
		// The proxy ended it, or the other pump closed everything.
	case src.sawClose.Load():
		// Half-closed, so that the other direction flows until it ends;
		// unless it has ended already: then both connections are closed
		// next (run), and the FIN would be sent twice.
		if !dst.ended.Load() {
			dst.closeWrite()
		}
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
