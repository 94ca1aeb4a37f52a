package proxy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// recordHooks forwards everything and records what it saw.
type recordHooks struct{ events []string }

func (r *recordHooks) data(h frameHeader, msgLen uint64) bool {
	r.events = append(r.events, fmt.Sprintf("data op=%d fin=%v len=%d msg=%d", h.opcode, h.fin, h.length, msgLen))
	return true
}

func (r *recordHooks) control(h frameHeader, frame []byte) bool {
	r.events = append(r.events, fmt.Sprintf("control op=%d len=%d %x", h.opcode, h.length, controlPayload(nil, h, frame)))
	return true
}

// scanChunks scans stream cut at cuts and returns the forwarded bytes and
// the events.
func scanChunks(t *testing.T, stream []byte, cuts []int) ([]byte, []string) {
	var s frameScanner
	hooks := &recordHooks{}
	var out bytes.Buffer
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if err := s.scan(stream[prev:c], hooks, func(b []byte) error { out.Write(b); return nil }); err != nil {
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
			op := []byte{opPing, opPong, opClose}[r.IntN(3)]
			stream = appendFrame(stream, op, bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(126)), mask)
			frames++
			continue
		}
		op := []byte{opText, opBinary}[r.IntN(2)]
		parts := 1 + r.IntN(4)
		for i := range parts {
			payload := make([]byte, sizes[r.IntN(len(sizes))])
			for j := range payload {
				payload[j] = byte(j)
			}
			f := appendFrame(nil, op, payload, mask)
			if i > 0 {
				f[0] = f[0]&0xf0 | opContinuation
			}
			if i < parts-1 {
				f[0] &^= 0x80 // not FIN
			}
			stream = append(stream, f...)
			frames++
			if i < parts-1 && r.IntN(2) == 0 { // a ping between fragments
				stream = appendFrame(stream, opPing, []byte("between"), mask)
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
	mask := &[4]byte{1, 2, 3, 4}
	before := appendFrame(nil, opText, []byte("hello"), mask)
	pong := appendFrame(nil, opPong, []byte("wssproxy-1"), mask)
	after := appendFrame(nil, opBinary, bytes.Repeat([]byte("x"), 300), mask)
	stream := append(append(append([]byte(nil), before...), pong...), after...)
	want := append(append([]byte(nil), before...), after...)
	for cut := 0; cut <= len(stream); cut++ {
		var s frameScanner
		hooks := consumePong{}
		var out bytes.Buffer
		fwd := func(b []byte) error { out.Write(b); return nil }
		s.scan(stream[:cut], hooks, fwd)
		s.scan(stream[cut:], hooks, fwd)
		if !bytes.Equal(out.Bytes(), want) || !s.atBoundary() {
			t.Fatalf("cut %d: got %d bytes, want %d", cut, out.Len(), len(want))
		}
	}
}

type consumePong struct{}

func (consumePong) data(frameHeader, uint64) bool { return true }
func (consumePong) control(h frameHeader, frame []byte) bool {
	return !(h.opcode == opPong && string(controlPayload(nil, h, frame)) == "wssproxy-1")
}

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

func (nopHooks) data(frameHeader, uint64) bool    { return true }
func (nopHooks) control(frameHeader, []byte) bool { return true }
func forwardNothing([]byte) error                 { return nil }

// BenchmarkScanner measures the frame scanner alone: a read holding 100
// masked 32-byte frames, and one holding 16 KiB of a 64 KiB frame.
func BenchmarkScanner(b *testing.B) {
	mask := &[4]byte{1, 2, 3, 4}
	small := bytes.Repeat(appendFrame(nil, opBinary, make([]byte, 32), mask), 100)
	big := appendFrame(nil, opBinary, make([]byte, 64<<10), mask)[:16<<10]
	for _, c := range []struct {
		name string
		read []byte
	}{{"100x32B", small}, {"16KiB-of-64KiB", big}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.read)))
			b.ReportAllocs()
			var sc frameScanner
			for b.Loop() {
				sc = frameScanner{held: sc.held[:0]}
				if err := sc.scan(c.read, nopHooks{}, forwardNothing); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
