// Package wsframe is the one WebSocket frame codec (RFC 6455 §5) of the
// module: header encoding and parsing, masking, and the Scanner that follows
// frame boundaries through a byte stream for the proxy's tunnel. The proxy,
// its tests and cmd/wsload all frame through it.
//
// It is pure: no I/O beyond reading a header from an io.Reader, no
// allocation on the paths called per message.
package wsframe

import (
	"encoding/binary"
	"io"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// MaxControlPayload is the largest payload a valid control frame carries
// (RFC 6455 §5.5).
const MaxControlPayload = 125

// MaxHeaderLen is the longest frame header: 2 bytes, a 64-bit length and a
// masking key.
const MaxHeaderLen = 14

// Header is a frame header.
type Header struct {
	Fin    bool
	RSV    byte // RSV1..RSV3 as the low 3 bits
	Opcode byte
	Masked bool
	Length uint64
	Mask   [4]byte
}

// HeaderLen is the full header length once its first two bytes are known,
// or 0 before.
func HeaderLen(b []byte) int {
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

// ParseHeader decodes a frame header from the start of b. size is 0 while
// b holds less than the whole header.
func ParseHeader(b []byte) (h Header, size int) {
	size = HeaderLen(b)
	if size == 0 || len(b) < size {
		return h, 0
	}
	h.Fin = b[0]&0x80 != 0
	h.RSV = b[0] >> 4 & 0x7
	h.Opcode = b[0] & 0x0f
	h.Masked = b[1]&0x80 != 0
	switch n := b[1] & 0x7f; n {
	case 126:
		h.Length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		h.Length = binary.BigEndian.Uint64(b[2:10])
	default:
		h.Length = uint64(n)
	}
	if h.Masked {
		copy(h.Mask[:], b[size-4:size])
	}
	return h, size
}

// HeaderSize is the encoded length of h, in the shortest length form.
func HeaderSize(h Header) int {
	n := 2
	switch {
	case h.Length <= 125:
	case h.Length <= 0xffff:
		n += 2
	default:
		n += 8
	}
	if h.Masked {
		n += 4
	}
	return n
}

// AppendHeader appends h to dst in the shortest length form (§5.2).
func AppendHeader(dst []byte, h Header) []byte {
	b0 := h.RSV<<4 | h.Opcode&0x0f
	if h.Fin {
		b0 |= 0x80
	}
	b1 := byte(0)
	if h.Masked {
		b1 = 0x80
	}
	dst = append(dst, b0)
	switch n := h.Length; {
	case n <= 125:
		dst = append(dst, b1|byte(n))
	case n <= 0xffff:
		dst = append(dst, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, n)
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}

// AppendFrame appends a whole final frame with payload to dst, masked with
// mask when mask is not nil (frames to a server must be masked, §5.3).
func AppendFrame(dst []byte, opcode byte, payload []byte, mask *[4]byte) []byte {
	h := Header{Fin: true, Opcode: opcode, Length: uint64(len(payload))}
	if mask != nil {
		h.Masked, h.Mask = true, *mask
	}
	dst = AppendHeader(dst, h)
	if mask == nil {
		return append(dst, payload...)
	}
	n := len(dst)
	dst = append(dst, payload...)
	MaskCopy(dst[n:], payload, h.Mask)
	return dst
}

// MaskCopy writes src XOR the repeating masking key into dst (§5.3), eight
// bytes at a time. dst may be src.
func MaskCopy(dst, src []byte, key [4]byte) {
	m4 := binary.LittleEndian.Uint32(key[:])
	m8 := uint64(m4) | uint64(m4)<<32
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^m8)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[i&3]
	}
}

// ControlPayload returns a whole control frame's payload, unmasked into
// dst's storage.
func ControlPayload(dst []byte, h Header, frame []byte) []byte {
	_, size := ParseHeader(frame)
	dst = append(dst[:0], frame[size:]...)
	if h.Masked {
		MaskCopy(dst, dst, h.Mask)
	}
	return dst
}

// ReadHeader reads one frame header from r, using scratch (at least
// MaxHeaderLen bytes) for its bytes so that nothing escapes.
func ReadHeader(r io.Reader, scratch []byte) (Header, error) {
	if _, err := io.ReadFull(r, scratch[:2]); err != nil {
		return Header{}, err
	}
	n := HeaderLen(scratch[:2])
	if _, err := io.ReadFull(r, scratch[2:n]); err != nil {
		return Header{}, err
	}
	h, _ := ParseHeader(scratch[:n])
	return h, nil
}
