package tunnel

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// TestStatsCount guards the per-tunnel accounting: messages (a fragmented
// one once, control frames never), bytes written on, and the time of the
// last data frame, each way, as Stats sees them while the tunnel is open
// and as the End has them.
func TestStatsCount(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{}, true)
		if s := r.tun.Stats(); s.In != (DirStats{}) || s.Out != (DirStats{}) {
			t.Fatalf("a new tunnel's stats: %+v", s)
		}
		opened := time.Now()
		time.Sleep(time.Second) // fake time: the first message comes a second in
		for range 3 {
			r.client.send(wsframe.OpText, []byte("hello"))
			r.backend.next()
		}
		// One message in two fragments, and a ping between them.
		r.client.c.Write(fragment(wsframe.OpText, false, "fr"))
		r.backend.next()
		r.client.send(wsframe.OpPing, []byte("p"))
		r.backend.next()
		r.client.c.Write(fragment(wsframe.OpContinuation, true, "ag"))
		r.backend.next()
		synctest.Wait()
		s := r.tun.Stats()
		if s.In.Messages != 4 || s.Out.Messages != 0 {
			t.Fatalf("messages in %d out %d, want 4 and 0", s.In.Messages, s.Out.Messages)
		}
		// 3 frames of 2+4+5 bytes, two fragments of 2+4+2, a 2+4+1 byte ping.
		if want := int64(3*11 + 2*8 + 7); s.In.Bytes != want {
			t.Fatalf("bytes in %d, want %d", s.In.Bytes, want)
		}
		if !s.In.Last.Equal(opened.Add(time.Second)) || !s.Out.Last.IsZero() {
			t.Fatalf("last in %v (want %v), out %v", s.In.Last, opened.Add(time.Second), s.Out.Last)
		}
		if !s.Opened.Equal(opened) {
			t.Fatalf("opened %v, want %v", s.Opened, opened)
		}
		time.Sleep(time.Minute)
		r.backend.send(wsframe.OpBinary, make([]byte, 200))
		r.client.next()
		synctest.Wait()
		s = r.tun.Stats()
		if s.Out.Messages != 1 || s.Out.Bytes != 204 || !s.Out.Last.Equal(opened.Add(time.Minute+time.Second)) {
			t.Fatalf("out %+v", s.Out)
		}
		r.client.sendClose(1000, "")
		r.backend.expectClose(1000)
		r.backend.sendClose(1000, "")
		r.backend.c.Close()
		r.client.expectClose(1000)
		e := r.end()
		if e.In.Messages != 4 || e.Out.Messages != 1 {
			t.Fatalf("end messages in %d out %d", e.In.Messages, e.Out.Messages)
		}
	})
}

// fragment is one masked frame of a fragmented message, as a client sends it.
func fragment(op byte, fin bool, payload string) []byte {
	h := wsframe.Header{Fin: fin, Opcode: op, Length: uint64(len(payload)), Masked: true, Mask: [4]byte{1, 2, 3, 4}}
	b := wsframe.AppendHeader(nil, h)
	n := len(b)
	b = append(b, payload...)
	wsframe.MaskCopy(b[n:], b[n:], h.Mask)
	return b
}

// BenchmarkPublish measures what the accounting adds to each read: the
// pump's three stores of its counts for Stats (atomic, so that the tunnel
// API may read them), against the same stores to plain fields.
func BenchmarkPublish(b *testing.B) {
	var s side
	var plain struct{ msgs, fwd, last int64 }
	b.Run("atomic", func(b *testing.B) {
		for i := int64(0); b.Loop(); i++ {
			s.fwd.Store(i)
			s.lastMsg.Store(i)
			s.msgs.Store(i)
		}
	})
	b.Run("plain", func(b *testing.B) {
		for i := int64(0); b.Loop(); i++ {
			plain.fwd, plain.last, plain.msgs = i, i, i
		}
	})
}
