package proxy

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter enforces max_connections, max_connections_per_ip and the
// handshake rate per client IP. A connection counts from the moment its
// handshake is accepted for checking until its tunnel ends, so a flood of
// handshakes cannot dial past the limit. It is consulted once per
// handshake, never per message.
type limiter struct {
	mu       sync.Mutex
	maxConns int
	maxPerIP int
	rate     rate.Limit // 0: no rate limit
	burst    int

	total int
	perIP map[string]*ipState
	sweep int // perIP size that triggers the next sweep of idle entries
}

type ipState struct {
	conns int
	lim   *rate.Limiter
}

func newLimiter() *limiter { return &limiter{perIP: make(map[string]*ipState), sweep: 1024} }

// configure applies a Config's limits; counts carry over (a reload does not
// forget open connections).
func (l *limiter) configure(c *Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxConns, l.maxPerIP = c.MaxConnections, c.MaxConnectionsPerIP
	l.rate, l.burst = rate.Limit(c.HandshakeRatePerIP), c.HandshakeBurstPerIP
	if l.rate > 0 && l.burst == 0 {
		l.burst = max(1, int(math.Ceil(c.HandshakeRatePerIP)))
	}
	for _, st := range l.perIP {
		st.lim = nil // rebuilt with the new rate on next use
	}
}

// acquire admits one connection from ip, or says which limit refused it
// (429 for the rate, 503 for the connection limits). release must be
// called once for every admitted connection.
//
// A full proxy refuses before it looks at the address, and an address is
// entered in perIP only when it is admitted: at max_connections a flood
// of handshakes from ever new addresses (an IPv6 /64 holds 2^64) leaves
// nothing behind, where an entry per refusal grew the heap by 84 MiB per
// million refused addresses, 160 MiB with a rate limit
// (TestLimiterFullRemembersNothing). A handshake refused for a full proxy
// takes no token from its address's rate: it cost nothing.
func (l *limiter) acquire(ip string) (status int, kind, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.total >= l.maxConns {
		return http.StatusServiceUnavailable, "limit-connections", "too many connections"
	}
	st := l.perIP[ip]
	if st == nil {
		// A new address: its fresh rate limiter has its whole burst (at
		// least 1) and it has no connection, so it is admitted below.
		st = &ipState{}
		if len(l.perIP) >= l.sweep {
			l.sweepLocked()
		}
		l.perIP[ip] = st
	}
	if l.rate > 0 {
		if st.lim == nil {
			st.lim = rate.NewLimiter(l.rate, l.burst)
		}
		if !st.lim.Allow() {
			return http.StatusTooManyRequests, "limit-rate", "too many handshakes from this address"
		}
	}
	if l.maxPerIP > 0 && st.conns >= l.maxPerIP {
		return http.StatusServiceUnavailable, "limit-connections-per-ip", "too many connections from this address"
	}
	l.total++
	st.conns++
	return 0, "", ""
}

func (l *limiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if st := l.perIP[ip]; st != nil {
		st.conns--
		if st.conns == 0 && st.lim == nil {
			delete(l.perIP, ip)
		}
	}
}

// sweepLocked forgets addresses with no connection whose rate limiter has
// refilled: remembering them would change nothing. It runs before a new
// address is entered into a map that has doubled since the last sweep, so
// its cost is spread over the handshakes that entered them.
func (l *limiter) sweepLocked() {
	now := time.Now()
	for ip, st := range l.perIP {
		if st.conns == 0 && (st.lim == nil || st.lim.TokensAt(now) >= float64(l.burst)) {
			delete(l.perIP, ip)
		}
	}
	l.sweep = max(1024, 2*len(l.perIP))
}
