package wsframe

import "math"

// Scanner follows WebSocket frame boundaries through one direction of a
// byte stream without changing it: it reads frame headers only, never
// unmasks a data payload, and never buffers one. Frames that break the
// protocol are passed on as they are, for the endpoint to refuse: the
// scanner only needs their length. The one exception is a length with the
// top bit set (RFC 6455 §5.2), which cannot be followed at all.
//
// Control frames of valid size are held whole (at most 131 bytes) so the
// tunnel can recognise and consume the pongs that answer its own pings.
// The zero Scanner is at the start of a stream.
type Scanner struct {
	hdr    [MaxHeaderLen]byte // header bytes of the current frame, while incomplete
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
	paused  bool // Admit said not yet: ScanTo stops before this header
}

// Hooks receive what Scan finds.
type Hooks interface {
	// Admit is called at each data (non-control) frame's header before
	// Data, unless the stream is being discarded. false pauses: ScanTo
	// stops before the header, having passed on everything before it, and
	// returns where it stopped; the next call, with the rest, sees the
	// header again and asks again. Control frames are never paused.
	Admit(h Header) bool
	// Data is called at each non-control frame's header, with the length
	// of the message so far including this frame. false discards the
	// stream from here on (the tunnel is closing).
	Data(h Header, msgLen uint64) bool
	// Control is called with a whole control frame (header and payload,
	// still masked as it came). false consumes it.
	Control(h Header, frame []byte) bool
	// Oversized is called at the header of a control frame longer than
	// 125 bytes (invalid, §5.5), which is passed on as it comes.
	Oversized(h Header)
	// Malformed is called at a header whose 64-bit length has the top bit
	// set (§5.2). Nothing of it or after it is passed on.
	Malformed(h Header)
}

// Scan walks p, calling forward for every run of bytes to pass on, in
// order. Hooks see each header (and each whole control frame) before any
// byte of that frame is passed on. Bytes are passed on in place: a read
// holding whole frames goes out as one run, so one write; only a header or
// control frame split across reads is passed on from the scanner's copy,
// and only a consumed frame splits a run.
//
// Hooks must admit every frame (Admit true): a pause would drop the rest
// of p. ScanTo is Scan for hooks that may pause.
func (s *Scanner) Scan(p []byte, hooks Hooks, forward func([]byte) error) error {
	_, err := s.ScanTo(p, hooks, forward)
	return err
}

// ScanTo is Scan, stopping where Admit pauses it: it returns how much of
// p it has followed (len(p) unless paused). The caller passes the rest
// again, from there, when it is ready to go on.
func (s *Scanner) ScanTo(p []byte, hooks Hooks, forward func([]byte) error) (int, error) {
	start := 0 // first byte of p not yet passed on or dropped
	var err error
	i := 0
	for i < len(p) && err == nil && !s.broken && !s.paused {
		switch {
		case s.holding: // a control frame begun in an earlier read
			i, err = s.collect(p, i, hooks, forward)
			start = i
		case s.left > 0: // payload: passed on in place
			n := min(uint64(len(p)-i), s.left)
			i += int(n)
			s.left -= n
		default:
			i, start, err = s.header(p, i, start, hooks, forward)
		}
	}
	if s.paused {
		s.paused = false
		return i, err
	}
	if err != nil || s.broken {
		return len(p), err
	}
	return len(p), s.pass(p[start:], forward)
}

// header follows the frame header beginning (or continuing, when split
// across reads) at p[i]. start is the first byte of p not yet passed on;
// header returns the new i and start.
func (s *Scanner) header(p []byte, i, start int, hooks Hooks, forward func([]byte) error) (int, int, error) {
	begin := i // where the header starts in p, if it does
	split := s.hdrLen > 0
	for s.hdrLen < len(s.hdr) && i < len(p) {
		s.hdr[s.hdrLen] = p[i]
		s.hdrLen++
		i++
		if need := HeaderLen(s.hdr[:s.hdrLen]); need > 0 && s.hdrLen == need {
			break
		}
	}
	h, size := ParseHeader(s.hdr[:s.hdrLen])
	if size == 0 { // incomplete: the rest comes with the next read
		return i, i, s.pass(p[start:begin], forward)
	}
	if h.Opcode < OpClose && h.Length < 1<<63 && !s.discard && !hooks.Admit(h) {
		// Not yet: stop before this header, keeping only what earlier
		// reads gave of it; the next ScanTo reads the rest again.
		s.hdrLen = size - (i - begin)
		s.paused = true
		return begin, begin, s.pass(p[start:begin], forward)
	}
	s.hdrLen = 0
	if split { // the header is only whole in s.hdr
		if err := s.pass(p[start:begin], forward); err != nil {
			return i, start, err
		}
		start = i
	}
	if h.Length >= 1<<63 {
		s.broken = true
		hooks.Malformed(h)
		if split {
			return i, start, nil // what came before is passed on already
		}
		return i, start, s.pass(p[start:begin], forward)
	}
	if h.Opcode >= OpClose && h.Length <= MaxControlPayload {
		return s.control(p, begin, i, start, split, h, size, hooks, forward)
	}
	if h.Opcode >= OpClose {
		hooks.Oversized(h)
	} else if s.refused(h, hooks) {
		// What came before goes; from this header on, nothing.
		if !split {
			if err := s.pass(p[start:begin], forward); err != nil {
				return i, start, err
			}
		}
		s.discard = true
	}
	s.left = h.Length
	if split {
		return i, start, s.pass(s.hdr[:size], forward)
	}
	return i, start, nil
}

// control follows a control frame of valid size whose header (of size
// bytes, at p[begin:i] unless split) has just been read: handed to the
// hooks in place when whole in this read, else held until it is.
func (s *Scanner) control(p []byte, begin, i, start int, split bool, h Header, size int, hooks Hooks, forward func([]byte) error) (int, int, error) {
	if end := i + int(h.Length); !split && end <= len(p) { // whole in this read
		if !hooks.Control(h, p[begin:end]) {
			if err := s.pass(p[start:begin], forward); err != nil {
				return end, start, err
			}
			start = end
		}
		return end, start, nil
	}
	if !split { // else what came before is passed on already
		if err := s.pass(p[start:begin], forward); err != nil {
			return i, start, err
		}
		s.held = append(s.held[:0], p[begin:i]...)
	} else {
		s.held = append(s.held[:0], s.hdr[:size]...)
	}
	s.holding, s.left = true, h.Length
	i, err := s.collect(p, i, hooks, forward)
	return i, i, err
}

// collect adds what p[i:] holds of the held control frame, and releases the
// frame once whole.
func (s *Scanner) collect(p []byte, i int, hooks Hooks, forward func([]byte) error) (int, error) {
	n := min(len(p)-i, int(s.left))
	s.held = append(s.held, p[i:i+n]...)
	i += n
	s.left -= uint64(n)
	if s.left > 0 {
		return i, nil
	}
	return i, s.release(hooks, forward)
}

// refused follows a data frame's header: the message's length so far, and
// the data hook. true: the hook refused it now.
func (s *Scanner) refused(h Header, hooks Hooks) bool {
	if h.Opcode != OpContinuation {
		s.msgLen = 0
	}
	if s.msgLen += h.Length; s.msgLen < h.Length {
		s.msgLen = math.MaxUint64 // saturates: fragments cannot wrap the sum
	}
	refuse := !s.discard && !hooks.Data(h, s.msgLen)
	if h.Fin {
		s.msgLen = 0
	}
	return refuse
}

// release hands a held control frame, now whole, to the hooks and passes it
// on unless consumed.
func (s *Scanner) release(hooks Hooks, forward func([]byte) error) error {
	s.holding = false
	h, _ := ParseHeader(s.held)
	var err error
	if hooks.Control(h, s.held) {
		err = s.pass(s.held, forward)
	}
	s.held = s.held[:0]
	return err
}

// pass forwards b unless it is empty or the stream is being discarded.
func (s *Scanner) pass(b []byte, forward func([]byte) error) error {
	if len(b) == 0 || s.discard {
		return nil
	}
	return forward(b)
}

// AtBoundary reports whether the stream so far ends between frames, where
// the proxy may insert a frame of its own.
func (s *Scanner) AtBoundary() bool {
	return s.left == 0 && s.hdrLen == 0 && !s.holding
}
