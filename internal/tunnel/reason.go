package tunnel

import "time"

// Reason is why the proxy ended a tunnel; ByPeers when it did not (the
// peers closed it, or one vanished after the other's close).
type Reason uint8

const (
	ByPeers Reason = iota
	Shutdown
	IdleTimeout
	MaxLifetime
	MessageTooBig
	ProtocolError
	ClientUnresponsive
	BackendUnresponsive
	ClientNotReading
	BackendNotReading
	ClientVanished
	BackendVanished
	ClientVanishedMidFrame
	BackendVanishedMidFrame
	AdminClose   // an operator closed it (the admin listener's tunnel API)
	RateLimited  // over its route's message-rate limits, with rate_limit_action "close"
	TokenExpired // the token that opened it expired (close_at_expiry)
)

var reasonText = [...]string{
	ByPeers:                 "",
	Shutdown:                "shutdown",
	IdleTimeout:             "idle timeout",
	MaxLifetime:             "max lifetime",
	MessageTooBig:           "message too big",
	ProtocolError:           "protocol error",
	ClientUnresponsive:      "client unresponsive",
	BackendUnresponsive:     "backend unresponsive",
	ClientNotReading:        "client not reading",
	BackendNotReading:       "backend not reading",
	ClientVanished:          "client vanished",
	BackendVanished:         "backend vanished",
	ClientVanishedMidFrame:  "client vanished mid-frame",
	BackendVanishedMidFrame: "backend vanished mid-frame",
	AdminClose:              "closed by admin",
	RateLimited:             "rate limited",
	TokenExpired:            "token expired",
}

// String is the reason as the access log says it.
func (r Reason) String() string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return "unknown"
}

// Backend reports reasons that are the backend's doing (logged at warn).
func (r Reason) Backend() bool {
	switch r {
	case BackendUnresponsive, BackendNotReading, BackendVanished, BackendVanishedMidFrame:
		return true
	}
	return false
}

// Half is how one direction ended: the bytes written on, and the error
// that ended its reads (nil for a clean end of stream, net.ErrClosed when
// the proxy closed it).
type Half struct {
	Bytes    int64
	Messages int64 // messages begun (a fragmented message counts once)
	Err      error
}

// End is how a tunnel ended, as its done function is told.
type End struct {
	Reason    Reason
	CloseCode int    // the first close frame's code; 1006 when nobody sent one (RFC 6455 §7.1.5)
	ClosedBy  string // who sent it: "client", "backend", "proxy", or "none"
	In, Out   Half   // client to backend, and back
	Duration  time.Duration
	IO        string        // see Tunnel.IO
	Throttled time.Duration // how long the rate limits held the client's reads
}

func (t *Tunnel) summary() End {
	t.mu.Lock()
	e := End{Reason: t.reason, In: t.in, Out: t.out}
	t.mu.Unlock()
	e.CloseCode, e.ClosedBy = closeAbnormal, "none"
	if c := t.firstClose.Load(); c != nil {
		e.CloseCode, e.ClosedBy = c.code, c.by
	}
	e.Duration = time.Since(t.start)
	e.IO = t.IO()
	e.Throttled = time.Duration(t.throttled.Load())
	return e
}
