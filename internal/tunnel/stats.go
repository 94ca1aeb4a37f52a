package tunnel

import "time"

// Per-tunnel accounting. Each pump counts the messages it reads and the
// bytes it writes on in plain fields of its own (hooks.msgs, pumper.n),
// and publishes them to its side once per read, and before each throttle
// of the rate limits (three atomic stores, no lock, no allocation): Stats
// reads those from any goroutine. A read not yet published is not seen;
// the End has the final figures.

// DirStats is one direction of a tunnel so far.
type DirStats struct {
	Messages int64     // messages begun; a fragmented message counts once
	Bytes    int64     // bytes written on, frame headers included
	Last     time.Time // when the last data frame was read; zero: none yet
}

// Stats is a tunnel's accounting so far: In is client to backend, Out
// backend to client.
type Stats struct {
	Opened    time.Time
	In, Out   DirStats
	Throttled time.Duration // how long rate limits have held the client's reads
}

// Stats is the tunnel's accounting so far, as last published by its pumps.
func (t *Tunnel) Stats() Stats {
	return Stats{Opened: t.start, In: t.client.stats(), Out: t.backend.stats(), Throttled: time.Duration(t.throttled.Load())}
}

// stats is what s's pump has published of the direction it reads.
func (s *side) stats() DirStats {
	d := DirStats{Messages: s.msgs.Load(), Bytes: s.fwd.Load()}
	if ns := s.lastMsg.Load(); ns > 0 {
		d.Last = s.t.start.Add(time.Duration(ns))
	}
	return d
}
