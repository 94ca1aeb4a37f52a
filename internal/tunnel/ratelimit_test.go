package tunnel

import (
	"encoding/binary"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// clientFrames is n masked text messages "0", "1", ... as one write's bytes.
func clientFrames(from, n int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = wsframe.AppendFrame(b, wsframe.OpText, []byte(fmt.Sprint(i)), &[4]byte{1, 2, 3, 4})
	}
	return b
}

// TestRateLimitThrottle guards throttling: 1,000 messages written as fast
// as the pipe takes them under message_rate 100, message_burst 100 all
// reach the backend, in order, and the limiter's own clock (synctest's)
// shows none came sooner than the limit allows: message k (from 0) no
// earlier than (k+1-100)/100 s, the last one at 9 s.
func TestRateLimitThrottle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{Limit: &RateLimit{Messages: rate.NewLimiter(100, 100)}}, true)
		start := time.Now()
		go r.client.c.Write(clientFrames(0, 1000)) // blocks while the proxy is not reading: backpressure
		var last time.Duration
		for k := range 1000 {
			f := r.backend.next()
			if string(f.payload) != fmt.Sprint(k) {
				t.Fatalf("message %d is %q: lost or reordered", k, f.payload)
			}
			at := time.Since(start)
			if earliest := time.Duration(k+1-100) * time.Second / 100; at < earliest {
				t.Fatalf("message %d at %v, before %v", k, at, earliest)
			}
			last = at
		}
		if last != 9*time.Second {
			t.Errorf("the last message at %v, want 9s (900 past the burst at 100/s)", last)
		}
		if got := r.tun.Stats().Throttled; got < 8*time.Second || got > 9*time.Second {
			t.Errorf("throttled %v, want about 9s", got)
		}
		r.client.sendClose(1000, "")
		r.closeHandshake()
		if e := r.end(); e.In.Messages != 1000 || e.Throttled != r.tun.Stats().Throttled {
			t.Errorf("end: %d messages, throttled %v", e.In.Messages, e.Throttled)
		}
	})
}

// TestRateLimitControlFrames guards what "never held back" means: in one
// read holding [A][ping][B][close] under 1 message a second, A and the
// ping pass at once, B and the close (behind B on the wire) a second
// later; the backend's ping reaches the client during the wait; and the
// held client, whose answers would be behind B, is not pinged by
// keepalive (ping_interval 10s) nor taken for silent.
func TestRateLimitControlFrames(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := Policy{Limit: &RateLimit{Messages: rate.NewLimiter(rate.Every(time.Minute), 1)},
			PingInterval: 10 * time.Second, PingTimeout: 5 * time.Second}
		r := newRig(t, p, true)
		start := time.Now()
		mask := &[4]byte{1, 2, 3, 4}
		var b []byte
		b = wsframe.AppendFrame(b, wsframe.OpText, []byte("A"), mask)
		b = wsframe.AppendFrame(b, wsframe.OpPing, []byte("p"), mask)
		b = wsframe.AppendFrame(b, wsframe.OpText, []byte("B"), mask)
		b = wsframe.AppendFrame(b, wsframe.OpClose, binary.BigEndian.AppendUint16(nil, 1000), mask)
		go r.client.c.Write(b)
		for _, want := range []struct {
			op      byte
			payload string
			at      time.Duration
		}{{wsframe.OpText, "A", 0}, {wsframe.OpPing, "p", 0}} {
			if f := r.backend.next(); f.op != want.op || string(f.payload) != want.payload || time.Since(start) != want.at {
				t.Fatalf("backend got %d %q at %v, want %d %q at %v", f.op, f.payload, time.Since(start), want.op, want.payload, want.at)
			}
		}
		r.backend.send(wsframe.OpPing, []byte("from the backend"))
		if f := r.client.next(); f.op != wsframe.OpPing || time.Since(start) != 0 {
			t.Fatalf("client got %d %q at %v during the throttle", f.op, f.payload, time.Since(start))
		}
		if f := r.backend.next(); string(f.payload) != "B" || time.Since(start) != time.Minute {
			t.Fatalf("backend got %q at %v, want B at 1m", f.payload, time.Since(start))
		}
		r.closeHandshake()
		if e := r.end(); e.Reason != ByPeers || e.In.Messages != 2 {
			t.Fatalf("end %+v", e)
		}
	})
}

// closeHandshake finishes a close the client began with 1000: the
// backend gets it and answers, then closes TCP, and the client gets the
// answer.
func (r *rig) closeHandshake() {
	r.t.Helper()
	r.backend.expectClose(1000)
	r.backend.sendClose(1000, "")
	r.backend.c.Close()
	r.client.expectClose(1000)
}

// heldRig is a tunnel whose client sent two messages under one message
// per 1000 s: the first has reached the backend, the second is held.
// Inside a synctest bubble.
func heldRig(t *testing.T) (*rig, time.Time) {
	r := newRig(t, Policy{Limit: &RateLimit{Messages: rate.NewLimiter(rate.Every(1000*time.Second), 1)}}, true)
	start := time.Now()
	go r.client.c.Write(clientFrames(0, 2))
	r.backend.next()
	synctest.Wait() // message 1 is held
	return r, start
}

// TestRateLimitLifted guards that a closing tunnel is not kept waiting:
// with a message held for 1000 s, the backend's close frame lifts the
// limits, so the held message and the client's close reply pass at once.
func TestRateLimitLifted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r, start := heldRig(t)
		r.backend.sendClose(1001, "bye")
		r.client.expectClose(1001)
		r.client.sendClose(1001, "")
		if f := r.backend.next(); string(f.payload) != "1" {
			t.Fatalf("backend got %q, want the held message", f.payload)
		}
		r.backend.expectClose(1001)
		if d := time.Since(start); d != 0 {
			t.Fatalf("closed after %v, want at once", d)
		}
		r.backend.c.Close()
		r.end()
	})
}

// TestRateLimitClose guards rate_limit_action "close": the message over
// the limit is not passed on, both peers get 1008, and the tunnel ends as
// rate limited.
func TestRateLimitClose(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{Limit: &RateLimit{Messages: rate.NewLimiter(1, 2), Close: true}}, true)
		go r.client.c.Write(clientFrames(0, 3))
		r.backend.next()
		r.backend.next()
		r.backend.expectClose(ClosePolicy)
		r.client.expectClose(ClosePolicy)
		r.client.sendClose(ClosePolicy, "")
		r.backend.sendClose(ClosePolicy, "")
		r.backend.c.Close()
		if e := r.end(); e.Reason != RateLimited || e.CloseCode != ClosePolicy || e.In.Messages != 2 {
			t.Fatalf("end %+v", e)
		}
	})
}

// TestRateLimitBytesAndPerIP guards byte_rate (a frame costs its length;
// one longer than the burst waits its whole length's worth) and a limiter
// shared by two tunnels (message_rate_per_ip): their sum keeps to it.
func TestRateLimitBytesAndPerIP(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{Limit: &RateLimit{Bytes: rate.NewLimiter(1000, 1000)}}, true)
		start := time.Now()
		go r.client.send(wsframe.OpBinary, make([]byte, 1000)) // the burst
		r.backend.next()
		go r.client.send(wsframe.OpBinary, make([]byte, 3000)) // three bursts' worth
		r.backend.next()
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("the 3000-byte frame after %v, want 3s", d)
		}

		shared := rate.NewLimiter(10, 10)
		a := newRig(t, Policy{Limit: &RateLimit{PerIP: shared}}, true)
		b := newRig(t, Policy{Limit: &RateLimit{PerIP: shared}}, true)
		start = time.Now()
		go a.client.c.Write(clientFrames(0, 50))
		go b.client.c.Write(clientFrames(0, 50))
		done := make(chan struct{})
		go func() {
			for range 50 {
				b.backend.next()
			}
			close(done)
		}()
		for range 50 {
			a.backend.next()
		}
		<-done
		if d := time.Since(start); d != 9*time.Second {
			t.Errorf("100 messages of one address after %v, want 9s (90 past the burst at 10/s)", d)
		}
	})
}

// TestRateLimitHugeFrameHeader guards the work one header may cause: a
// client data frame whose header claims 2^62 bytes under byte_rate is
// paused after a bounded number of token reservations (a burst's worth at
// a time, across pauses), not held on a CPU reserving all its bursts at
// once, which no close or shutdown could end.
func TestRateLimitHugeFrameHeader(t *testing.T) {
	t.Parallel()
	tun := &Tunnel{policy: Policy{Limit: &RateLimit{Bytes: rate.NewLimiter(1000, 1000)}}}
	tun.client = &side{t: tun}
	h := &hooks{t: tun, src: tun.client}
	done := make(chan bool, 1)
	go func() {
		done <- h.admit(wsframe.Header{Opcode: wsframe.OpBinary, Fin: true, Masked: true, Length: 1 << 62})
	}()
	select {
	case ok := <-done:
		if ok || h.wait <= 0 || h.wait > time.Second {
			t.Fatalf("admit %v, wait %v: want a pause of at most one burst's worth (1s)", ok, h.wait)
		}
	case <-time.After(time.Minute): // a watchdog: the answer takes microseconds
		t.Fatal("admit still reserving tokens after a minute")
	}
}

// TestRateLimitThrottledNotIdle guards idle_timeout and the tunnel API
// during a long throttle: 100 messages that came in one read, let through
// at 10 a second under idle_timeout 2s, all reach the backend (the
// tunnel is not taken for idle while its messages flow), and Stats shows
// those passed on so far while the read is still being let through.
func TestRateLimitThrottledNotIdle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{IdleTimeout: 2 * time.Second, Limit: &RateLimit{Messages: rate.NewLimiter(10, 10)}}, true)
		go r.client.c.Write(clientFrames(0, 100))
		for k := range 100 {
			if f := r.backend.next(); f.op != wsframe.OpText || string(f.payload) != fmt.Sprint(k) {
				t.Fatalf("backend got opcode %d %q, want message %d", f.op, f.payload, k)
			}
			if k == 50 {
				synctest.Wait() // the pump is held before message 51
				if st := r.tun.Stats(); st.In.Messages != 51 || st.In.Last.IsZero() {
					t.Errorf("during the throttle Stats says %d messages in, last %v; want 51 and a time", st.In.Messages, st.In.Last)
				}
			}
		}
		r.client.sendClose(1000, "")
		r.closeHandshake()
		if e := r.end(); e.Reason != ByPeers || e.In.Messages != 100 {
			t.Fatalf("end %+v", e)
		}

		// One wait longer than idle_timeout: the held message is not
		// silence either.
		r = newRig(t, Policy{IdleTimeout: 2 * time.Second, Limit: &RateLimit{Messages: rate.NewLimiter(rate.Every(time.Minute), 1)}}, true)
		start := time.Now()
		go r.client.c.Write(clientFrames(0, 2))
		for k := range 2 {
			if f := r.backend.next(); f.op != wsframe.OpText || string(f.payload) != fmt.Sprint(k) {
				t.Fatalf("backend got opcode %d %q at %v, want message %d", f.op, f.payload, time.Since(start), k)
			}
		}
		if d := time.Since(start); d != time.Minute {
			t.Fatalf("the held message came after %v, want 1m", d)
		}
		if f := r.backend.expectClose(CloseGoingAway); string(f.payload[2:]) != "idle timeout" {
			t.Fatalf("close %q, want the idle timeout, 2s after the message", f.payload)
		}
		if d := time.Since(start); d != time.Minute+2*time.Second {
			t.Fatalf("idle timeout after %v, want 1m2s", d)
		}
	})
}

// TestRateLimitShutWhileHeld guards the proxy's own close during a
// throttle (a drain, the tunnel API, a timeout: Shut): with a message held
// for 1000 s, the close frames reach both peers at once and the client's
// close reply is not kept waiting. The held message, let go by the same
// Shut, races the close frame to the backend (as a message still on the
// wire does when a tunnel without limits is shut): it passes before it or
// not at all, never after.
func TestRateLimitShutWhileHeld(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r, start := heldRig(t)
		r.tun.Shut(AdminClose, ClosePolicy, CloseGoingAway, "closed by the operator")
		r.client.expectClose(ClosePolicy)
		if f := r.backend.next(); f.op != wsframe.OpText || string(f.payload) != "1" {
			if f.op != wsframe.OpClose || f.code() != CloseGoingAway {
				t.Fatalf("backend got opcode %d %q, want the held message or close 1001", f.op, f.payload)
			}
		} else {
			r.backend.expectClose(CloseGoingAway)
		}
		r.client.sendClose(ClosePolicy, "")
		r.backend.sendClose(CloseGoingAway, "")
		r.backend.expectEnd()
		if e := r.end(); e.Reason != AdminClose || e.CloseCode != ClosePolicy {
			t.Fatalf("end %+v", e)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("ended after %v, want at once", d)
		}
	})
}

// TestRateLimitCloseLifted guards rate_limit_action "close" once the
// tunnel is closing: after the backend's close frame the limits are
// lifted, as with throttling, so what the client sends before its close
// reply passes, and the backend gets that reply (1000), not a 1008 of the
// proxy's for a message over a limit that no longer applies.
func TestRateLimitCloseLifted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{Limit: &RateLimit{Messages: rate.NewLimiter(rate.Every(time.Minute), 1), Close: true}}, true)
		r.client.send(wsframe.OpText, []byte("0"))
		r.backend.next()
		r.backend.sendClose(1000, "bye")
		r.client.expectClose(1000)
		r.client.send(wsframe.OpText, []byte("1"))
		r.client.sendClose(1000, "")
		if f := r.backend.next(); f.op != wsframe.OpText || string(f.payload) != "1" {
			t.Fatalf("backend got opcode %d %q, want message 1", f.op, f.payload)
		}
		r.backend.expectClose(1000)
		r.backend.c.Close()
		if e := r.end(); e.Reason != ByPeers || e.CloseCode != 1000 {
			t.Fatalf("end %+v", e)
		}
	})
}
