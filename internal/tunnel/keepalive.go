package tunnel

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// The proxy's timers for a tunnel: keepalive pings to either side,
// idle_timeout and max_lifetime. All are runtime timers (time.AfterFunc):
// an idle tunnel has no goroutine of its own waiting on them, and no clock
// is read per message beyond one time.Since per read.

func (t *Tunnel) startTimers() {
	p := t.policy
	if p.PingInterval > 0 {
		t.keepalive(t.client, p.PingInterval, p.PingTimeout)
	}
	if p.BackendPingInterval > 0 {
		t.keepalive(t.backend, p.BackendPingInterval, p.PingTimeout)
	}
	if p.IdleTimeout > 0 {
		t.watchIdle(p.IdleTimeout)
	}
	if p.MaxLifetime > 0 {
		t.after(jitter(p.MaxLifetime), func() {
			t.Shut(MaxLifetime, CloseGoingAway, CloseGoingAway, "connection lifetime reached")
		})
	}
}

// keeper pings one side of a tunnel when it has been silent for every, and
// ends the tunnel when nothing at all comes back within limit: the peer
// is dead (a phone gone out of coverage, a NAT that dropped the mapping)
// even though TCP still looks open.
type keeper struct {
	t            *Tunnel
	s            *side
	every, limit time.Duration
	timer        *time.Timer
	waiting      bool  // a ping is out
	mark         int64 // s.lastFrame when it went out
}

func (t *Tunnel) keepalive(s *side, every, timeout time.Duration) {
	k := &keeper{t: t, s: s, every: every, limit: timeout}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Armed only once k is complete: a callback must never see it half-built.
	k.timer = time.AfterFunc(time.Hour, k.fire)
	k.timer.Stop()
	t.timers = append(t.timers, k.timer)
	k.timer.Reset(every)
}

// fire runs on the timer; runs never overlap, as each schedules the next.
// Each schedules the next before it writes a ping: a write into a full
// socket waits (up to send_timeout), and the ping timeout must run anyway.
func (k *keeper) fire() {
	now := int64(time.Since(k.t.start))
	last := k.s.lastFrame.Load()
	if k.s.held.Load() || k.t.other(k.s).busy() {
		// s's pump is blocked writing to the other side, or held by the
		// rate limits, so nothing of s is being read: its silence says
		// nothing. A stuck other side is send_timeout's to find.
		k.waiting = false
		k.timer.Reset(k.every)
		return
	}
	if k.waiting {
		if last == k.mark {
			// The ping waits in the queue while s's output is inside a
			// frame (RFC 6455 §5.4: a control frame goes between
			// frames), as when a large message goes to a slow reader;
			// the peer has then not been asked yet. limit counts from
			// when the ping went out.
			if k.s.hasPending.Load() {
				k.timer.Reset(k.limit)
				return
			}
			if due := k.s.flushed.Load() + int64(k.limit); now < due {
				k.timer.Reset(time.Duration(due - now))
				return
			}
			r := pick(k.s, ClientUnresponsive, BackendUnresponsive)
			k.t.deadPeer(k.s, r, r.String())
			return
		}
		k.waiting = false
	}
	if silent := time.Duration(now - last); silent < k.every {
		k.timer.Reset(k.every - silent)
		return
	}
	k.waiting, k.mark = true, last
	k.timer.Reset(k.limit)
	k.s.send(k.s.ping(), false)
}

// ping is the proxy's ping to s: its token, so the answer can be told
// from answers to the peer's own pings, and a counter.
func (s *side) ping() []byte {
	payload := make([]byte, 0, len(s.pingToken)+4)
	payload = append(payload, s.pingToken[:]...)
	payload = binary.BigEndian.AppendUint32(payload, s.pings.Add(1))
	return wsframe.AppendFrame(nil, wsframe.OpPing, payload, maskKey(s.mask))
}

// watchIdle ends the tunnel after d without a data frame either way
// (control frames, the proxy's pings included, do not count).
func (t *Tunnel) watchIdle(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var tm *time.Timer
	check := func() {
		if t.client.held.Load() {
			// A client message waits for the rate limits: not idle.
			tm.Reset(d)
			return
		}
		if silent := time.Since(t.start) - time.Duration(t.lastData.Load()); silent < d {
			tm.Reset(d - silent)
			return
		}
		t.Shut(IdleTimeout, CloseGoingAway, CloseGoingAway, "idle timeout")
	}
	tm = time.AfterFunc(time.Hour, check) // armed once tm is set
	tm.Stop()
	t.timers = append(t.timers, tm)
	tm.Reset(d)
}

// jitter is d give or take up to 10%, at random: tunnels opened together
// (after a deploy, say) do not all reach max_lifetime together.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
