package tunnel

// The pump's decisions about frames (hooks) and the proxy's own frames.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// hooks are the pump's decisions about frames read from src.
type hooks struct {
	t        *Tunnel
	src, dst *side
	sawData  bool  // a data frame began in this chunk
	closing  bool  // the frame about to be forwarded is src's close frame
	srcDone  bool  // src's close handshake is done: close it once this read is forwarded
	msgs     int64 // messages begun (data frames other than continuations); the pump's own count

	// Rate limits (ratelimit.go), client to backend only.
	wait      time.Duration // how long to hold the pump before the frame paused at
	granted   bool          // its tokens are reserved: admit it when asked again (once owed is 0)
	owed      uint64        // byte tokens of that frame not yet reserved (it is longer than byte_burst)
	rest      bool          // the wait is for owed tokens of a frame already counted as throttled
	unlimited bool          // the limits are lifted: the tunnel is closing
	overLimit bool          // rate_limit_action close: refuse the frame
	scratch   [wsframe.MaxControlPayload]byte
}

// Admit asks the rate limits about a data frame (ratelimit.go).
func (h *hooks) Admit(f wsframe.Header) bool {
	if h.t.policy.Limit == nil {
		return true
	}
	return h.admit(f)
}

func (h *hooks) Data(f wsframe.Header, msgLen uint64) bool {
	if h.overLimit {
		return false
	}
	h.sawData = true
	if f.Opcode != wsframe.OpContinuation {
		h.msgs++
	}
	if limit := h.t.policy.MaxMessageSize; limit > 0 && msgLen > uint64(limit) {
		h.t.Shut(MessageTooBig, CloseTooBig, CloseTooBig, "message too big")
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
		if h.src == h.t.backend {
			h.t.liftLimits() // the client's reply must not wait behind its data
		}
		code := closeNoStatus
		if p := wsframe.ControlPayload(h.scratch[:0], f, frame); len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		h.t.noteClose(code, h.src.name)
		if h.src.proxyClosed.Load() {
			h.srcDone = true
			return false // the answer to the proxy's own close
		}
		// src cannot half-close, and its peer's close and end of stream
		// have passed (side.closeWrite): this answer is the last of it.
		h.srcDone = h.src.endOnClose.Load()
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
	h.t.setReason(ProtocolError)
	h.t.Shut(ProtocolError, CloseProtocol, CloseProtocol, "invalid frame length")
}

// CloseFrame is a close frame with code and reason, masked if mask (as
// frames to a backend are).
func CloseFrame(code int, reason string, mask bool) []byte { return closeFrame(code, reason, mask) }

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
