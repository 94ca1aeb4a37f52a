package proxy

import "encoding/binary"

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
// scanner only needs their length.
//
// Control frames of valid size are held whole (at most 131 bytes) so the
// tunnel can recognise and consume the pongs that answer its own pings.
type frameScanner struct {
	hdr    [14]byte // header bytes of the current frame, while incomplete
	hdrLen int
	left   uint64 // payload bytes of the current frame still to come

	held    []byte // a whole control frame being collected
	holding bool

	msgLen  uint64 // payload so far of the current (fragmented) message
	dropped bool   // a hook refused a frame: nothing more is forwarded
}

// frameHeader is what the tunnel learns of each frame.
type frameHeader struct {
	fin    bool
	opcode byte
	masked bool
	length uint64
	mask   [4]byte
}

// scanHooks receive what scan finds. Each returns whether the bytes
// concerned are forwarded.
type scanHooks interface {
	// data is called at each non-control frame's header, with the length
	// of the message so far including this frame. false drops the stream
	// from here on (the tunnel is closing).
	data(h frameHeader, msgLen uint64) bool
	// control is called with a whole control frame (header and payload,
	// still masked as it came). false consumes it.
	control(h frameHeader, frame []byte) bool
}

// scan walks p, calling forward for every run of bytes to pass on, in
// order. Hooks see each header (and each whole control frame) before any
// byte of that frame is passed on. Bytes are passed on in place: a read
// holding whole frames goes out as one run, so one write; only a header or
// control frame split across reads is passed on from the scanner's copy,
// and only a consumed frame splits a run.
func (s *frameScanner) scan(p []byte, hooks scanHooks, forward func([]byte) error) error {
	if s.dropped {
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
				s.holding = false
				h, _ := parseHeader(s.held)
				if hooks.control(h, s.held) {
					if err := forward(s.held); err != nil {
						return err
					}
				}
				s.held = s.held[:0]
			}
		case s.left > 0: // payload: passed on in place
			n := uint64(len(p) - i)
			if n > s.left {
				n = s.left
			}
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
				if err := flush(p[start:begin], forward); err != nil {
					return err
				}
				start = i
				continue
			}
			s.hdrLen = 0
			if split { // the header is only whole in s.hdr
				if err := flush(p[start:begin], forward); err != nil {
					return err
				}
				start = i
			}
			if h.opcode >= opClose && h.length <= maxControlPayload {
				end := i + int(h.length)
				if !split && end <= len(p) { // whole in this read
					if !hooks.control(h, p[begin:end]) {
						if err := flush(p[start:begin], forward); err != nil {
							return err
						}
						start = end
					}
					i = end
					continue
				}
				// Hold it until it is whole.
				if !split { // else what came before is passed on already
					if err := flush(p[start:begin], forward); err != nil {
						return err
					}
				}
				if split {
					s.held = append(s.held[:0], s.hdr[:size]...)
				} else {
					s.held = append(s.held[:0], p[begin:i]...)
				}
				s.holding, s.left = true, h.length
				start = i
				if s.left == 0 { // no payload: whole already
					s.holding = false
					if hooks.control(h, s.held) {
						if err := forward(s.held); err != nil {
							return err
						}
					}
				}
				continue
			}
			if h.opcode < opClose {
				if h.opcode != opContinuation {
					s.msgLen = 0
				}
				s.msgLen += h.length
				if !hooks.data(h, s.msgLen) {
					s.dropped = true
					if split {
						return nil // what came before is passed on already
					}
					return flush(p[start:begin], forward)
				}
				if h.fin {
					s.msgLen = 0
				}
			}
			s.left = h.length
			if split {
				if err := forward(s.hdr[:size]); err != nil {
					return err
				}
			}
		}
	}
	return flush(p[start:], forward)
}

// atBoundary reports whether the stream so far ends between frames, where
// the proxy may insert a frame of its own.
func (s *frameScanner) atBoundary() bool {
	return s.left == 0 && s.hdrLen == 0 && !s.holding
}

func flush(p []byte, forward func([]byte) error) error {
	if len(p) == 0 {
		return nil
	}
	return forward(p)
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
