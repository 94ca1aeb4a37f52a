package tunnel

// Message-rate limits on what the client sends (the route's message_rate,
// byte_rate and message_rate_per_ip). They are checked at each data
// frame's header, before any byte of the frame is passed on
// (hooks.Admit): a message costs one message token when it begins, and
// every data frame its length in byte tokens.
//
// Throttling (the default) stops the client's pump before that header:
// what came before it in the same read is written to the backend first,
// then the pump waits for the tokens without holding any lock, and reads
// nothing more from the client meanwhile, so TCP's window fills and the
// client's writes slow down. Nothing is dropped or reordered.
//
// What "control frames are never held back" means here, precisely. The
// proxy sees the client's frames in the order they are on the wire, and
// cannot pass a frame it has not read:
//   - Control frames cost no tokens and are never paused themselves.
//   - A control frame before the throttled message, in the same read or
//     an earlier one, is passed on before the wait.
//   - A control frame after it in the byte stream is behind it: it comes
//     when the message does, as it would through any TCP proxy.
//   - Nothing going the other way is limited: the backend's frames, pings
//     and close included, reach the client during a throttle, and the
//     proxy's own frames reach both peers (they do not wait for the held
//     pump, which holds no lock while it waits).
//   - Keepalive neither pings a client whose reads are held (its answer
//     could not be read) nor counts its silence.
//   - When the tunnel begins to close (a close frame from the backend or
//     the proxy: shutdown, the tunnel API, a timeout) the limits are
//     lifted, so the client's close reply is not kept waiting behind
//     them.
//
// With rate_limit_action "close", a data frame over the limits is not
// passed on: both peers get 1008 instead.

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// RateLimit is a tunnel's limits on what the client sends. Nil limiters
// are off.
type RateLimit struct {
	Messages *rate.Limiter // this tunnel's messages per second
	Bytes    *rate.Limiter // this tunnel's bytes per second (frame payloads)
	PerIP    *rate.Limiter // messages per second of all the client address's tunnels
	Close    bool          // over a limit: close with 1008 both ways, instead of throttling
}

// Limited is told of each throttle (closed false, once per wait) and each
// close (closed true) a tunnel's limits cause. Implemented by the Meter
// when it has the method.
type Limited interface {
	Limited(closed bool)
}

// admit decides about a client data frame at its header: true to go on;
// false with h.wait set to throttle first (the tokens are reserved then,
// and the frame admitted when asked again).
func (h *hooks) admit(f wsframe.Header) bool {
	l := h.t.policy.Limit
	if l == nil || h.src != h.t.client || h.unlimited {
		return true
	}
	if h.granted {
		return h.admitRest()
	}
	select {
	case <-h.t.lifted: // the tunnel is closing: "close" as well as throttling
		h.unlimited = true
		return true
	default:
	}
	now := time.Now()
	msg := f.Opcode != wsframe.OpContinuation
	if l.Close {
		ok := (!msg || allow(l.Messages, now, 1)) && (!msg || allow(l.PerIP, now, 1)) && allow(l.Bytes, now, f.Length)
		if !ok {
			h.overLimit = true
			h.t.limited(true)
			h.t.Shut(RateLimited, ClosePolicy, ClosePolicy, "message rate exceeded")
		}
		return true // Data refuses it (overLimit)
	}
	var wait time.Duration
	if msg {
		wait = max(reserveOne(l.Messages, now), reserveOne(l.PerIP, now))
	}
	bw, owed := reserve(l.Bytes, now, f.Length)
	if wait = max(wait, bw); wait <= 0 {
		return true
	}
	h.wait, h.granted, h.owed, h.rest = wait, true, owed, false
	return false
}

// admitRest goes on with a frame longer than byte_burst, paused at: the
// next burst's worth of its bytes is reserved, and it is admitted once
// nothing more is owed and the wait is over.
func (h *hooks) admitRest() bool {
	if h.owed == 0 {
		h.granted = false
		return true
	}
	wait, owed := reserve(h.t.policy.Limit.Bytes, time.Now(), h.owed)
	if wait <= 0 {
		h.granted = false
		return true // owed is 0 too
	}
	h.wait, h.owed, h.rest = wait, owed, true
	return false
}

// allow takes n tokens from l if it has them now (nil: no limit). A frame
// longer than the burst needs the bucket full.
func allow(l *rate.Limiter, now time.Time, n uint64) bool {
	if l == nil {
		return true
	}
	return l.AllowN(now, int(min(n, uint64(l.Burst()))))
}

// reserveOne takes a token from l, in debt if need be, and returns how
// long until the debt is paid (nil: 0).
func reserveOne(l *rate.Limiter, now time.Time) time.Duration {
	wait, _ := reserve(l, now, 1)
	return wait
}

// reserve takes n tokens from l, a burst at a time, in debt if need be,
// and stops at the first burst that must be waited for: it returns that
// wait and the tokens still owed (nil l: 0, 0). A frame longer than the
// burst thus waits its full length's worth, a burst per pause, and a
// header claiming 2^62 bytes costs one reservation or two, not 2^62/burst.
func reserve(l *rate.Limiter, now time.Time, n uint64) (time.Duration, uint64) {
	if l == nil {
		return 0, 0
	}
	for b := uint64(max(l.Burst(), 1)); n > 0; {
		k := min(n, b)
		n -= k
		if wait := l.ReserveN(now, int(k)).DelayFrom(now); wait > 0 {
			return wait, n
		}
	}
	return 0, 0
}

// throttle holds the client's pump for d, or until the tunnel begins to
// close (then the limits are lifted for good).
func (p *pumper) throttle(d time.Duration) {
	t := p.t
	if !p.h.rest { // the rest of a long frame is the same throttle
		t.limited(false)
	}
	p.src.held.Store(true)
	start := time.Now()
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
	case <-t.lifted:
		p.timer.Stop()
		p.h.unlimited = true
	}
	t.throttled.Add(int64(time.Since(start)))
	// The held frame goes on now: stored before held is cleared, so that
	// idle_timeout, which looks at held first, never sees the tunnel
	// neither held nor recently busy.
	t.lastData.Store(int64(time.Since(t.start)))
	p.src.held.Store(false)
}

// limited counts a throttle or a close, if the meter counts them.
func (t *Tunnel) limited(closed bool) {
	if l, ok := t.meter.(Limited); ok {
		l.Limited(closed)
	}
}

// liftLimits ends every throttle of the tunnel, now and later: it is
// closing, and the client's close reply must not wait behind its data.
func (t *Tunnel) liftLimits() {
	if t.lifted == nil {
		return
	}
	t.liftOnce.Do(func() { close(t.lifted) })
}
