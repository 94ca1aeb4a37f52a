package proxy

import (
	"encoding/binary"
	"math"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload a valid control frame carries
// (RFC 6455 §5.5). Only control frames up to this size are held whole.
const maxControlPayload = 125

// frameScanner follows WebSocket frame boundaries through one direction of
// a byte stream without changing it: it reads frame headers only, never
// unmasks a data payload, and never buffers one. Frames that break the
// protocol are passed on as they are, for the endpoint to refuse: the
// scanner only needs their length. The one exception is a length with the
// top bit set (RFC 6455 §5.2), which cannot be followed at all.
//
// Control frames of valid size are held whole (at most 131 bytes) so the
// tunnel can recognise and consume the pongs that answer its own pings.
type frameScanner struct {
	hdr    [14]byte // header bytes of the current frame, while incomplete
	hdrLen int
	left   uint64 // payload bytes of the current frame still to come

	held    []byte // a whole control frame being collected
	holding bool

	msgLen uint64 // payload so far of the current (fragmented) message; saturates
	// discard: a hook refused a data frame (the tunnel is closing). Frames
	// are still followed, so control frames (the peer's close reply) reach
	// the hooks, but nothing more is passed on.
	discard bool
	broken  bool // a header that cannot be followed: nothing more is read
}

// frameHeader is what the tunnel learns of each frame.
type frameHeader struct {
	fin    bool
	opcode byte
	masked bool
	length uint64
	mask   [4]byte
}

// scanHooks receive what scan finds.
type scanHooks interface {
	// data is called at each non-control frame's header, with the length
	// of the message so far including this frame. false discards the
	// stream from here on (the tunnel is closing).
	data(h frameHeader, msgLen uint64) bool
	// control is called with a whole control frame (header and payload,
	// still masked as it came). false consumes it.
	control(h frameHeader, frame []byte) bool
	// oversized is called at the header of a control frame longer than
	// 125 bytes (invalid, §5.5), which is passed on as it comes.
	oversized(h frameHeader)
	// malformed is called at a header whose 64-bit length has the top bit
	// set (§5.2). Nothing of it or after it is passed on.
	malformed(h frameHeader)
}

// scan walks p, calling forward for every run of bytes to pass on, in
// order. Hooks see each header (and each whole control frame) before any
// byte of that frame is passed on. Bytes are passed on in place: a read
// holding whole frames goes out as one run, so one write; only a header or
// control frame split across reads is passed on from the scanner's copy,
// and only a consumed frame splits a run.
func (s *frameScanner) scan(p []byte, hooks scanHooks, forward func([]byte) error) error {
	if s.broken {
		return nil
	}
	start := 0 // first byte of p not yet passed on or dropped
	for i := 0; i < len(p); {
		switch {
		case s.holding: // a control frame begun in an earlier read
			n := min(len(p)-i, int(s.left))
			s.held = append(s.held, p[i:i+n]...)
			i += n
			s.left -= uint64(n)
			start = i
			if s.left == 0 {
				if err := s.release(hooks, forward); err != nil {
					return err
				}
			}
		case s.left > 0: // payload: passed on in place
			n := min(uint64(len(p)-i), s.left)
			i += int(n)
			s.left -= n
		default: // a header
			begin := i // where the header starts in p, if it does
			split := s.hdrLen > 0
			for s.hdrLen < len(s.hdr) && i < len(p) {
				s.hdr[s.hdrLen] = p[i]
				s.hdrLen++
				i++
				if need := headerLen(s.hdr[:s.hdrLen]); need > 0 && s.hdrLen == need {
					break
				}
			}
			h, size := parseHeader(s.hdr[:s.hdrLen])
			if size == 0 { // incomplete: the rest comes with the next read
				if err := s.pass(p[start:begin], forward); err != nil {
					return err
				}
				start = i
				continue
			}
			s.hdrLen = 0
			if split { // the header is only whole in s.hdr
				if err := s.pass(p[start:begin], forward); err != nil {
					return err
				}
				start = i
			}
			if h.length >= 1<<63 {
				s.broken = true
				hooks.malformed(h)
				if split {
					return nil // what came before is passed on already
				}
				return s.pass(p[start:begin], forward)
			}
			if h.opcode >= opClose && h.length <= maxControlPayload {
				end := i + int(h.length)
				if !split && end <= len(p) { // whole in this read
					if !hooks.control(h, p[begin:end]) {
						if err := s.pass(p[start:begin], forward); err != nil {
							return err
						}
						start = end
					}
					i = end
					continue
				}
				// Hold it until it is whole.
				if !split { // else what came before is passed on already
					if err := s.pass(p[start:begin], forward); err != nil {
						return err
					}
					s.held = append(s.held[:0], p[begin:i]...)
				} else {
					s.held = append(s.held[:0], s.hdr[:size]...)
				}
				s.holding, s.left = true, h.length
				start = i
				if s.left == 0 { // no payload: whole already
					if err := s.release(hooks, forward); err != nil {
						return err
					}
				}
				continue
			}
			if h.opcode >= opClose {
				hooks.oversized(h)
			} else if s.refused(h, hooks) {
				// What came before goes; from this header on, nothing.
				if !split {
					if err := s.pass(p[start:begin], forward); err != nil {
						return err
					}
				}
				s.discard = true
			}
			s.left = h.length
			if split {
				if err := s.pass(s.hdr[:size], forward); err != nil {
					return err
				}
			}
		}
	}
	return s.pass(p[start:], forward)
}

// refused follows a data frame's header: the message's length so far, and
// the data hook. true: the hook refused it now.
func (s *frameScanner) refused(h frameHeader, hooks scanHooks) bool {
	if h.opcode != opContinuation {
		s.msgLen = 0
	}
	if s.msgLen += h.length; s.msgLen < h.length {
		s.msgLen = math.MaxUint64 // saturates: fragments cannot wrap the sum
	}
	refuse := !s.discard && !hooks.data(h, s.msgLen)
	if h.fin {
		s.msgLen = 0
	}
	return refuse
}

// release hands a held control frame, now whole, to the hooks and passes it
// on unless consumed.
func (s *frameScanner) release(hooks scanHooks, forward func([]byte) error) error {
	s.holding = false
	h, _ := parseHeader(s.held)
	var err error
	if hooks.control(h, s.held) {
		err = s.pass(s.held, forward)
	}
	s.held = s.held[:0]
	return err
}

// pass forwards b unless it is empty or the stream is being discarded.
func (s *frameScanner) pass(b []byte, forward func([]byte) error) error {
	if len(b) == 0 || s.discard {
		return nil
	}
	return forward(b)
}

// atBoundary reports whether the stream so far ends between frames, where
// the proxy may insert a frame of its own.
func (s *frameScanner) atBoundary() bool {
	return s.left == 0 && s.hdrLen == 0 && !s.holding
}

// headerLen is the full header length once its first two bytes are known,
// or 0 before.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// parseHeader decodes a frame header from the start of b. size is 0 while
// b holds less than the whole header.
func parseHeader(b []byte) (h frameHeader, size int) {
	size = headerLen(b)
	if size == 0 || len(b) < size {
		return h, 0
	}
	h.fin = b[0]&0x80 != 0
	h.opcode = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	switch n := b[1] & 0x7f; n {
	case 126:
		h.length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		h.length = binary.BigEndian.Uint64(b[2:10])
	default:
		h.length = uint64(n)
	}
	if h.masked {
		copy(h.mask[:], b[size-4:size])
	}
	return h, size
}

// appendFrame appends a whole frame with payload to dst, masked with mask
// when mask is not nil (frames to a server must be masked, RFC 6455 §5.3).
func appendFrame(dst []byte, opcode byte, payload []byte, mask *[4]byte) []byte {
	b1 := byte(0)
	if mask != nil {
		b1 = 0x80
	}
	dst = append(dst, 0x80|opcode)
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, b1|byte(n))
	case n <= 0xffff:
		dst = append(dst, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if mask == nil {
		return append(dst, payload...)
	}
	dst = append(dst, mask[:]...)
	for i, c := range payload {
		dst = append(dst, c^mask[i%4])
	}
	return dst
}

// controlPayload returns a whole control frame's payload, unmasked into
// dst's storage.
func controlPayload(dst []byte, h frameHeader, frame []byte) []byte {
	_, size := parseHeader(frame)
	dst = append(dst[:0], frame[size:]...)
	if h.masked {
		for i := range dst {
			dst[i] ^= h.mask[i%4]
		}
	}
	return dst
}
