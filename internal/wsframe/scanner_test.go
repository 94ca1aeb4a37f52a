package wsframe

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// recordHooks forwards everything and records what it saw.
type recordHooks struct{ events []string }

func (r *recordHooks) Admit(Header) bool { return true }

func (r *recordHooks) Data(h Header, msgLen uint64) bool {
	r.events = append(r.events, fmt.Sprintf("data op=%d fin=%v len=%d msg=%d", h.Opcode, h.Fin, h.Length, msgLen))
	return true
}

func (r *recordHooks) Control(h Header, frame []byte) bool {
	r.events = append(r.events, fmt.Sprintf("control op=%d len=%d %x", h.Opcode, h.Length, ControlPayload(nil, h, frame)))
	return true
}

func (r *recordHooks) Oversized(h Header) {
	r.events = append(r.events, fmt.Sprintf("oversized op=%d len=%d", h.Opcode, h.Length))
}

func (r *recordHooks) Malformed(h Header) {
	r.events = append(r.events, fmt.Sprintf("malformed op=%d", h.Opcode))
}

// scanChunks scans stream cut at cuts and returns the forwarded bytes and
// the events.
func scanChunks(t *testing.T, stream []byte, cuts []int) ([]byte, []string) {
	var s Scanner
	hooks := &recordHooks{}
	var out bytes.Buffer
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if err := s.Scan(stream[prev:c], hooks, func(b []byte) error { out.Write(b); return nil }); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	return out.Bytes(), hooks.events
}

// randomCuts returns sorted cut points in [0, n].
func randomCuts(r *rand.Rand, n int) []int {
	var cuts []int
	for c := 0; c < n; {
		c += 1 + r.IntN(min(n, 64)+1)*r.IntN(3)
		if c < n {
			cuts = append(cuts, c)
		}
	}
	return cuts
}

// randomFrames builds a valid frame stream: messages of random types and
// sizes (including the 125/126/65535/65536 length boundaries), fragmented
// at random, with control frames between fragments, masked or not.
func randomFrames(r *rand.Rand, masked bool) (stream []byte, frames int) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 70000}
	for range 1 + r.IntN(12) {
		var mask *[4]byte
		if masked {
			mask = &[4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		}
		if r.IntN(3) == 0 {
			op := []byte{OpPing, OpPong, OpClose}[r.IntN(3)]
			stream = AppendFrame(stream, op, bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(126)), mask)
			frames++
			continue
		}
		op := []byte{OpText, OpBinary}[r.IntN(2)]
		parts := 1 + r.IntN(4)
		for i := range parts {
			payload := make([]byte, sizes[r.IntN(len(sizes))])
			for j := range payload {
				payload[j] = byte(j)
			}
			f := AppendFrame(nil, op, payload, mask)
			if i > 0 {
				f[0] = f[0]&0xf0 | OpContinuation
			}
			if i < parts-1 {
				f[0] &^= 0x80 // not FIN
			}
			stream = append(stream, f...)
			frames++
			if i < parts-1 && r.IntN(2) == 0 { // a ping between fragments
				stream = AppendFrame(stream, OpPing, []byte("between"), mask)
				frames++
			}
		}
	}
	return stream, frames
}

// TestScannerPassesThrough is the property the tunnel rests on: any stream
// of valid frames, masked (client to backend) or not (backend to client),
// cut into random chunks, comes out byte for byte, with the same frames
// seen as when scanned whole.
func TestScannerPassesThrough(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 120 {
		masked := i%2 == 0
		stream, frames := randomFrames(r, masked)
		whole, wantEvents := scanChunks(t, stream, nil)
		if !bytes.Equal(whole, stream) || len(wantEvents) != frames {
			t.Fatalf("case %d whole: %d of %d bytes, %d of %d frames", i, len(whole), len(stream), len(wantEvents), frames)
		}
		cuts := randomCuts(r, len(stream))
		got, events := scanChunks(t, stream, cuts)
		if !bytes.Equal(got, stream) {
			t.Fatalf("case %d: output differs from input (%d vs %d bytes, cuts %v)", i, len(got), len(stream), cuts)
		}
		if fmt.Sprint(events) != fmt.Sprint(wantEvents) {
			t.Fatalf("case %d: events differ when chunked:\n%v\n%v", i, events, wantEvents)
		}
	}
}

// TestScannerConsumes guards that a consumed control frame, and nothing
// else, is removed from the stream, wherever the chunks are cut.
func TestScannerConsumes(t *testing.T) {
	t.Parallel()
	mask := &[4]byte{1, 2, 3, 4}
	before := AppendFrame(nil, OpText, []byte("hello"), mask)
	pong := AppendFrame(nil, OpPong, []byte("wssproxy-1"), mask)
	after := AppendFrame(nil, OpBinary, bytes.Repeat([]byte("x"), 300), mask)
	stream := append(append(append([]byte(nil), before...), pong...), after...)
	want := append(append([]byte(nil), before...), after...)
	for cut := 0; cut <= len(stream); cut++ {
		var s Scanner
		hooks := consumePong{}
		var out bytes.Buffer
		fwd := func(b []byte) error { out.Write(b); return nil }
		s.Scan(stream[:cut], hooks, fwd)
		s.Scan(stream[cut:], hooks, fwd)
		if !bytes.Equal(out.Bytes(), want) || !s.AtBoundary() {
			t.Fatalf("cut %d: got %d bytes, want %d", cut, out.Len(), len(want))
		}
	}
}

type consumePong struct{}

func (consumePong) Admit(Header) bool        { return true }
func (consumePong) Data(Header, uint64) bool { return true }
func (consumePong) Oversized(Header)         {}
func (consumePong) Malformed(Header)         {}
func (consumePong) Control(h Header, frame []byte) bool {
	return !(h.Opcode == OpPong && string(ControlPayload(nil, h, frame)) == "wssproxy-1")
}

// limitHooks refuses data past a message length, as max_message_size does,
// and records the control frames and protocol errors it sees.
type limitHooks struct {
	limit  uint64
	events []string
}

func (l *limitHooks) Admit(Header) bool { return true }

func (l *limitHooks) Data(h Header, msgLen uint64) bool {
	if msgLen > l.limit {
		l.events = append(l.events, fmt.Sprintf("refused msg=%d", msgLen))
		return false
	}
	return true
}

func (l *limitHooks) Control(h Header, frame []byte) bool {
	l.events = append(l.events, fmt.Sprintf("control op=%d %q", h.Opcode, ControlPayload(nil, h, frame)))
	return true
}
func (l *limitHooks) Oversized(h Header) {
	l.events = append(l.events, fmt.Sprintf("oversized op=%d", h.Opcode))
}
func (l *limitHooks) Malformed(h Header) { l.events = append(l.events, "malformed") }

// TestScannerLimits guards the scanner's part in max_message_size and in
// frames that break the protocol, for every place a read may be cut:
//   - a continuation whose 64-bit length has the top bit set is malformed
//     (RFC 6455 §5.2), not a length to add: the sum cannot wrap below the
//     limit, and nothing of that frame or after it is passed on;
//   - after a refused frame nothing more is passed on, but the frames that
//     follow are still followed, so the peer's close reply is seen;
//   - a close frame over 125 bytes is still recognised as a control frame.
func TestScannerLimits(t *testing.T) {
	t.Parallel()
	mask := &[4]byte{9, 8, 7, 6}
	start := AppendFrame(nil, OpText, make([]byte, 100), mask)
	start[0] &^= 0x80 // not FIN: a continuation follows
	huge := []byte{0x80 | OpContinuation, 0x80 | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xce, 1, 2, 3, 4}
	tooBig := AppendFrame(nil, OpBinary, make([]byte, 2000), mask)
	tooBig[0] = tooBig[0]&0xf0 | OpContinuation
	closeReply := AppendFrame(nil, OpClose, []byte{0x03, 0xf1}, mask)
	longClose := AppendFrame(nil, OpClose, append([]byte{0x03, 0xe8}, bytes.Repeat([]byte("r"), 198)...), mask)
	for _, c := range []struct {
		name       string
		stream     []byte
		wantOut    []byte
		wantEvents string
	}{
		{"top-bit length after 100 bytes", cat(start, huge, closeReply), start, "[malformed]"},
		{"refused frame, then the peer's close reply", cat(start, tooBig, closeReply), start,
			`[refused msg=2100 control op=8 "\x03\xf1"]`},
		{"close frame of 200 bytes", cat(longClose, closeReply), cat(longClose, closeReply),
			`[oversized op=8 control op=8 "\x03\xf1"]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			for cut := 0; cut <= len(c.stream); cut++ {
				var s Scanner
				hooks := &limitHooks{limit: 1000}
				var out bytes.Buffer
				fwd := func(b []byte) error { out.Write(b); return nil }
				s.Scan(c.stream[:cut], hooks, fwd)
				s.Scan(c.stream[cut:], hooks, fwd)
				if !bytes.Equal(out.Bytes(), c.wantOut) {
					t.Fatalf("cut %d: passed on %d bytes, want %d", cut, out.Len(), len(c.wantOut))
				}
				if got := fmt.Sprint(hooks.events); got != c.wantEvents {
					t.Fatalf("cut %d: events %s, want %s", cut, got, c.wantEvents)
				}
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// FuzzScanner guards that no byte stream panics the scanner or changes as
// it passes, and that chunking never changes what the hooks see.
func FuzzScanner(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		s, _ := randomFrames(r, r.IntN(2) == 0)
		f.Add(s[:min(len(s), 512)], uint64(7))
	}
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint64(1)) // 64-bit length with the top bit set
	f.Add([]byte{0x89, 0xfe, 0x01, 0x00, 1, 2, 3, 4}, uint64(3))    // control frame over 125
	f.Add([]byte{0x8f, 0x00, 0x73, 0x05, 0x01, 0x02}, uint64(2))    // reserved opcodes
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		whole, want := scanChunks(t, stream, nil)
		got, events := scanChunks(t, stream, randomCuts(rand.New(rand.NewPCG(seed, seed)), len(stream)))
		if !bytes.Equal(got, whole) || fmt.Sprint(events) != fmt.Sprint(want) {
			t.Fatal("chunking changed the result")
		}
		// Whatever was forwarded is a prefix of the input: complete frames,
		// and the input's bytes in order.
		if !bytes.HasPrefix(stream, whole) {
			t.Fatal("forwarded bytes are not the input's")
		}
	})
}

type nopHooks struct{}

func (nopHooks) Admit(Header) bool           { return true }
func (nopHooks) Data(Header, uint64) bool    { return true }
func (nopHooks) Control(Header, []byte) bool { return true }
func (nopHooks) Oversized(Header)            {}
func (nopHooks) Malformed(Header)            {}
func forwardNothing([]byte) error            { return nil }

// BenchmarkScanner measures the frame scanner alone: a read holding 100
// masked 32-byte frames, and one holding 16 KiB of a 64 KiB frame.
func BenchmarkScanner(b *testing.B) {
	mask := &[4]byte{1, 2, 3, 4}
	small := bytes.Repeat(AppendFrame(nil, OpBinary, make([]byte, 32), mask), 100)
	big := AppendFrame(nil, OpBinary, make([]byte, 64<<10), mask)[:16<<10]
	for _, c := range []struct {
		name string
		read []byte
	}{{"100x32B", small}, {"16KiB-of-64KiB", big}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.read)))
			b.ReportAllocs()
			var sc Scanner
			for b.Loop() {
				sc = Scanner{held: sc.held[:0]}
				if err := sc.Scan(c.read, nopHooks{}, forwardNothing); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pauseHooks refuses each data frame's header the first time it is asked
// (as a rate limit without tokens does), and records what it saw.
type pauseHooks struct {
	recordHooks
	asked bool // the header now being asked about was refused once
}

func (p *pauseHooks) Admit(Header) bool {
	p.asked = !p.asked
	return !p.asked
}

// TestScannerPause guards ScanTo's pauses, for every place a read may be
// cut: it stops exactly before a data frame's header, having passed on
// everything before it (control frames included), and the rest, passed
// again, goes on as if it had not stopped: the same bytes, in the same
// order, the same hook calls.
func TestScannerPause(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 20 {
		stream, _ := randomFrames(r, true)
		stream = stream[:min(len(stream), 4000)]
		// Where each frame header starts, and whether it is a data frame.
		dataAt := map[int]bool{}
		for off := 0; off < len(stream); {
			h, n := ParseHeader(stream[off:])
			if n == 0 {
				break
			}
			dataAt[off] = h.Opcode < OpClose
			off += n + int(h.Length)
		}
		wantOut, wantEvents := scanChunks(t, stream, nil)
		for _, cuts := range [][]int{nil, randomCuts(r, len(stream))} {
			var s Scanner
			hooks := &pauseHooks{}
			var out bytes.Buffer
			fwd := func(b []byte) error { out.Write(b); return nil }
			pauses, prev := 0, 0
			for _, c := range append(cuts, len(stream)) {
				chunk := stream[prev:c]
				for {
					n, err := s.ScanTo(chunk, hooks, fwd)
					if err != nil {
						t.Fatal(err)
					}
					if n == len(chunk) {
						break
					}
					pauses++
					if !dataAt[out.Len()] {
						t.Fatalf("round %d: paused with %d bytes passed on, not before a data frame's header", round, out.Len())
					}
					chunk = chunk[n:]
				}
				prev = c
			}
			if !bytes.Equal(out.Bytes(), wantOut) || fmt.Sprint(hooks.events) != fmt.Sprint(wantEvents) {
				t.Fatalf("round %d: pausing changed the result (%d pauses)", round, pauses)
			}
			if hasData := slices.Contains(slices.Collect(maps.Values(dataAt)), true); hasData && pauses == 0 {
				t.Fatalf("round %d: never paused", round)
			}
		}
	}
}
