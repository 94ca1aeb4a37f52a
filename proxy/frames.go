package proxy

// The pump's decisions about frames (hooks) and the proxy's own frames,
// written at frame boundaries.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

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
			s.closeConn()
		} else {
			s.t.after(closeGrace, s.closeConn)
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
