package tunnel

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
)

// side is one connection of a tunnel: what the proxy knows of the frames
// it reads from it, and the lock that orders what is written to it.
type side struct {
	name      string // "client" or "backend", for reasons and logs
	isBackend bool
	conn      sockio.Conn
	mask      bool // frames written to it are masked (it is a server: the backend)
	t         *Tunnel

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
	flushed    atomic.Int64 // ns since tunnel start when pending was last written out

	// Read by this side's pump.
	lastFrame   atomic.Int64 // ns since tunnel start of the last frame read
	sawClose    atomic.Bool  // it sent a close frame
	endOnClose  atomic.Bool  // it cannot half-close: its close frame, when it passes, ends it (closeWrite)
	proxyClosed atomic.Bool  // the proxy itself sent it a close frame
	ended       atomic.Bool  // its pump has read all there is of it
	held        atomic.Bool  // its pump is held by the rate limits: it is not being read
	pingToken   [8]byte      // payload prefix of the proxy's pings
	pings       atomic.Uint32

	// What its pump has passed on, published once per read for Stats:
	// the pump counts in plain fields and stores here after each read.
	msgs    atomic.Int64 // messages begun
	fwd     atomic.Int64 // bytes written to the other side
	lastMsg atomic.Int64 // ns since tunnel start of the last data frame read; 0: none
}

func newSide(t *Tunnel, name string, conn sockio.Conn, isBackend bool) *side {
	return &side{name: name, isBackend: isBackend, conn: conn, mask: isBackend, t: t, pingToken: token()}
}

// write writes b to s within send_timeout (s.mu held): a peer that has
// not taken one read's worth of bytes (up to 64 KiB) in that time is not
// reading. The deadline is moved only when less than 7/8 of it is left,
// so a busy tunnel sets it about once per send_timeout/8, not per write;
// a write not finished fails between 7/8 of send_timeout and all of it.
// It is a bound on each write, not on the gap between two bytes: a write
// that timed out cannot be resumed over TLS (crypto/tls's state is then
// spent), and cutting writes smaller would cost every busy tunnel system
// calls. At the 60 s default a peer must take about 1.3 KB/s to keep up
// with a 64 KiB write.
func (s *side) write(b []byte) (int, error) {
	if limit := s.t.policy.SendTimeout; limit > 0 {
		if now := time.Since(s.t.start); s.deadline-now < limit-limit/8 {
			s.deadline = now + limit
			s.conn.SetWriteDeadline(s.t.start.Add(s.deadline))
		}
	}
	n, err := s.conn.Write(b)
	switch {
	case err == nil:
	case s.dropped.Load():
		err = nil // the proxy closed it on purpose
	case errors.Is(err, os.ErrDeadlineExceeded):
		r := pick(s, ClientNotReading, BackendNotReading)
		s.t.deadPeer(s, r, r.String())
		err = nil // s is dropped; the tunnel goes on with the other side
	default:
		// s is gone (reset, or an HTTP/2 stream whose connection ended):
		// it is its peer's doing, as if it had vanished, and the other
		// side is told so; the pump writing here reads on for its reply.
		s.t.deadPeer(s, pick(s, ClientVanished, BackendVanished), pick(s, "client went away", "backend went away"))
		err = nil
	}
	return n, err
}

// drop closes s's connection on purpose: its writes fail quietly.
func (s *side) drop() {
	s.dropped.Store(true)
	s.conn.Close()
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
	if isClose {
		s.t.liftLimits() // the tunnel is closing: see ratelimit.go
	}
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
			s.flushed.Store(int64(time.Since(s.t.start)))
			s.closeSent = isClose
			if isClose && s.hangUp.Load() {
				s.drop()
			}
		}
		s.mu.Unlock()
	}
}

// closeWrite half-closes s after its peer's close frame and end of stream
// have passed: for TLS a close_notify alert, then the FIN. A connection
// that cannot half-close (an HTTP/2 stream) is closed instead: at once if
// s's own close frame has passed, else as soon as it does (the pump that
// reads s sees it: hooks.Control), or CloseGrace after if it never comes.
// Then both close frames are through and nothing more can flow, as over
// HTTP/1.1 once the client has answered the FIN it was sent.
func (s *side) closeWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.t.policy.SendTimeout; limit > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(limit))
	}
	if err := s.conn.CloseWrite(); errors.Is(err, errors.ErrUnsupported) {
		// Stored before sawClose is looked at, as Control stores sawClose
		// before it looks at this: a close frame passing now is seen by
		// one of the two, or both (closing twice is harmless).
		s.endOnClose.Store(true)
		if s.sawClose.Load() {
			s.conn.Close()
		} else {
			s.t.after(s.t.policy.CloseGrace, func() { s.conn.Close() })
		}
	}
}

// busy reports whether a write to s is under way: the pump that writes to
// s is then not reading its own side. Having taken s's lock to see, it
// writes the queue as it lets go, as every holder must (flushPending): a
// frame queued meanwhile found the lock taken and left it to this.
func (s *side) busy() bool {
	if !s.mu.TryLock() {
		return true
	}
	s.mu.Unlock()
	s.flushPending()
	return false
}
