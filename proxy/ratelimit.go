package proxy

// Message-rate limits per route (message_rate, message_burst, byte_rate,
// byte_burst, message_rate_per_ip, rate_limit_action): checked here, once,
// at compile time; each tunnel is given its limiters when it starts
// (internal/tunnel's ratelimit.go applies them to what the client sends).

import (
	"cmp"
	"math"
	"sync"

	"golang.org/x/time/rate"

	"github.com/wssproxy/wssproxy/internal/tunnel"
)

// rateSpec is a route's compiled limits; nil on a route without any.
type rateSpec struct {
	msgRate, byteRate, ipRate    rate.Limit
	msgBurst, byteBurst, ipBurst int
	close                        bool
	perIP                        *ipLimiters // the address's shared limiter, for message_rate_per_ip
}

// compileLimits checks route r's limit keys (key is the route's, for
// errors) and returns what they compile to.
func compileLimits(key string, r *Route, add func(error)) *rateSpec {
	bad := false
	check := func(name string, v float64) {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			add(fieldErr(key+"."+name, "must be a number of at least 0, got %v", v))
			bad = true
		}
	}
	check("message_rate", r.MessageRate)
	check("byte_rate", r.ByteRate)
	check("message_rate_per_ip", r.MessageRatePerIP)
	check("message_burst", float64(r.MessageBurst))
	check("byte_burst", float64(r.ByteBurst))
	if r.MessageBurst > 0 && r.MessageRate == 0 && r.MessageRatePerIP == 0 {
		add(fieldErr(key+".message_burst", "is set without message_rate or message_rate_per_ip"))
		bad = true
	}
	if r.ByteBurst > 0 && r.ByteRate == 0 {
		add(fieldErr(key+".byte_burst", "is set without byte_rate"))
		bad = true
	}
	limited := r.MessageRate > 0 || r.ByteRate > 0 || r.MessageRatePerIP > 0
	switch r.RateLimitAction {
	case "", "throttle", "close":
	default:
		add(fieldErr(key+".rate_limit_action", `must be "throttle" or "close", got %q`, r.RateLimitAction))
		bad = true
	}
	if bad || !limited {
		return nil
	}
	oneSecond := func(r float64) int { return max(1, int(math.Ceil(r))) }
	spec := &rateSpec{close: r.RateLimitAction == "close"}
	if r.MessageRate > 0 {
		spec.msgRate, spec.msgBurst = rate.Limit(r.MessageRate), cmp.Or(r.MessageBurst, oneSecond(r.MessageRate))
	}
	if r.ByteRate > 0 {
		spec.byteRate, spec.byteBurst = rate.Limit(r.ByteRate), cmp.Or(r.ByteBurst, oneSecond(r.ByteRate))
	}
	if r.MessageRatePerIP > 0 {
		spec.ipRate, spec.ipBurst = rate.Limit(r.MessageRatePerIP), cmp.Or(r.MessageBurst, oneSecond(r.MessageRatePerIP))
		spec.perIP = &ipLimiters{rate: spec.ipRate, burst: spec.ipBurst}
	}
	return spec
}

// limit is a new tunnel's limits, for a client at ip; release gives back
// what it took of the shared per-address limiter when the tunnel ends.
func (spec *rateSpec) limit(ip string) (*tunnel.RateLimit, func()) {
	if spec == nil {
		return nil, func() {}
	}
	l := &tunnel.RateLimit{Close: spec.close}
	if spec.msgRate > 0 {
		l.Messages = rate.NewLimiter(spec.msgRate, spec.msgBurst)
	}
	if spec.byteRate > 0 {
		l.Bytes = rate.NewLimiter(spec.byteRate, spec.byteBurst)
	}
	if spec.perIP == nil {
		return l, func() {}
	}
	l.PerIP = spec.perIP.acquire(ip)
	return l, func() { spec.perIP.release(ip) }
}

// ipLimiters are a route's per-address limiters: one per client address
// with tunnels open on the route, shared by them, dropped when its last
// tunnel ends. A reload compiles the route afresh, with none: tunnels open
// before it keep theirs.
type ipLimiters struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	byIP  map[string]*ipLimiter
}

type ipLimiter struct {
	lim  *rate.Limiter
	refs int
}

func (m *ipLimiters) acquire(ip string) *rate.Limiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.byIP[ip]
	if l == nil {
		if m.byIP == nil {
			m.byIP = make(map[string]*ipLimiter)
		}
		l = &ipLimiter{lim: rate.NewLimiter(m.rate, m.burst)}
		m.byIP[ip] = l
	}
	l.refs++
	return l.lim
}

func (m *ipLimiters) release(ip string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.byIP[ip]; l != nil {
		if l.refs--; l.refs == 0 {
			delete(m.byIP, ip)
		}
	}
}
