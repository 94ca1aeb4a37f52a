package proxy

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wssproxy/wssproxy/internal/urlport"
)

// Pools: a route's backends, the order they are tried in, and their health.
// A single backend is a pool of one.

// Balancing methods.
const (
	balanceRoundRobin = "round_robin"
	balanceLeastConn  = "least_conn"
	balanceIPHash     = "ip_hash"
)

// upstream is one backend of a pool: the shared backend (registry.go) as
// this route of this configuration names and weighs it.
type upstream struct {
	*backend
	name      string // as configured, for logs
	url       *url.URL
	weight    int
	hashKey   uint64
	transport string      // the host of plain-HTTP request URLs
	check     *checkState // active health; nil when the route runs no checks

	current int // smooth weighted round robin, guarded by pool.mu
}

// pool is a route's backends.
type pool struct {
	ups         []*upstream
	balance     string
	tries       int
	maxFails    int
	failTimeout time.Duration
	log         *slog.Logger

	mu sync.Mutex // round robin state
}

// parseUpstream reads one backends entry: "ws://10.0.0.1:8282 weight=3",
// "ws+unix:///run/app/ws.sock".
func parseUpstream(s string) (*url.URL, int, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, 0, fmt.Errorf("empty backend")
	}
	weight := 1
	for _, f := range fields[1:] {
		v, ok := strings.CutPrefix(f, "weight=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 || n > 1000 {
			return nil, 0, fmt.Errorf("%q: after the URL only weight=N (1 to 1000) may follow", s)
		}
		weight = n
	}
	u, err := parseBackend(fields[0])
	return u, weight, err
}

// newPool builds the pool of a compiled route, rt made from plan, with
// the Server's backends.
func (s *Server) newPool(plan *routePlan, rt *route) *pool {
	r := plan.src
	p := &pool{balance: r.Balance, failTimeout: r.FailTimeout, log: s.log}
	if p.balance == "" {
		p.balance = balanceRoundRobin
	}
	check := ""
	switch {
	case r.HealthInterval == 0:
	case r.HealthPath != "":
		check = "GET " + r.HealthPath
	default:
		check = "WebSocket " + rt.targetPath(rt.prefix)
	}
	for i, e := range plan.ups {
		u := e.url
		up := &upstream{name: e.name, url: u, weight: e.weight}
		h := fnv.New64a()
		h.Write([]byte(up.name))
		up.hashKey = h.Sum64()
		key := backendKey{network: "tcp", addr: u.Host, sendProxy: rt.sendProxy}
		switch {
		case strings.HasSuffix(u.Scheme, "+unix"):
			key.network, key.addr = "unix", u.Path
		case r.Socket != "":
			key.network, key.addr = "unix", r.Socket
		case u.Port() == "":
			key.addr = urlport.HostPort(u)
		}
		up.transport = key.addr
		if key.network == "unix" {
			up.transport = fmt.Sprintf("upstream-%d.invalid:80", i)
		}
		var roots *x509.CertPool
		if isTLSScheme(u.Scheme) {
			key.tls, key.serverName = true, cmp.Or(r.BackendServerName, u.Hostname())
			if plan.roots != nil {
				key.roots, roots = plan.rootsSum, plan.roots
			}
		}
		up.backend, up.check = s.backend(key, roots, check)
		p.ups = append(p.ups, up)
	}
	p.maxFails = 1
	if r.MaxFails != nil {
		p.maxFails = *r.MaxFails
	}
	p.tries = len(p.ups)
	if r.MaxRetries != nil {
		p.tries = min(len(p.ups), *r.MaxRetries+1)
	}
	return p
}

func isTLSScheme(s string) bool { return s == "wss" || s == "https" }

func (p *pool) String() string {
	if len(p.ups) == 1 {
		return p.ups[0].name
	}
	names := make([]string, len(p.ups))
	for i, u := range p.ups {
		names[i] = u.name
	}
	return strings.Join(names, ",")
}

// down reports whether u is out of rotation now.
func (u *upstream) down(now time.Time) bool {
	if u.check != nil && u.check.down.Load() {
		return true
	}
	return u.passiveDown(now)
}

// order returns the backends to try for a client, best first, at most
// tries long. Backends out of rotation come only when all are out: a
// client never sees a failure while any backend is healthy, and never a
// failure for want of trying when none is.
func (p *pool) order(clientIP string) []*upstream {
	if len(p.ups) == 1 {
		return p.ups
	}
	now := time.Now()
	var up []*upstream
	for _, u := range p.ups {
		if !u.down(now) {
			up = append(up, u)
		}
	}
	if len(up) == 0 {
		up = slices.Clone(p.ups)
	}
	switch p.balance {
	case balanceLeastConn:
		slices.SortStableFunc(up, func(a, b *upstream) int {
			// Compare conns/weight without division.
			return int(a.conns.Load()*int64(b.weight) - b.conns.Load()*int64(a.weight))
		})
	case balanceIPHash:
		// Weighted rendezvous hashing: each client ranks every backend the
		// same way every time; a backend that leaves moves only the clients
		// it had (they go to their second choice).
		h := fnv.New64a()
		h.Write([]byte(clientIP))
		seed := h.Sum64()
		score := func(u *upstream) float64 {
			x := mix(seed ^ u.hashKey)
			f := (float64(x>>11) + 0.5) / (1 << 53) // in (0, 1)
			return -float64(u.weight) / math.Log(f)
		}
		slices.SortStableFunc(up, func(a, b *upstream) int {
			sa, sb := score(a), score(b)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return 0
		})
	default: // smooth weighted round robin, as nginx does it
		p.mu.Lock()
		total, best := 0, 0
		for i, u := range up {
			u.current += u.weight
			total += u.weight
			if u.current > up[best].current {
				best = i
			}
		}
		up[best].current -= total
		p.mu.Unlock()
		up = append(up[best:], up[:best]...)
	}
	if len(up) > p.tries {
		up = up[:p.tries]
	}
	return up
}

// mix is SplitMix64's finaliser: a good 64-bit mix for hashing.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// failed counts a failed dial: max_fails within fail_timeout take u out
// for fail_timeout (nginx's semantics). max_fails 0 never does.
func (p *pool) failed(u *upstream) {
	if p.maxFails == 0 || len(p.ups) == 1 {
		return
	}
	now := time.Now()
	u.mu.Lock()
	if now.Sub(u.failStart) > p.failTimeout {
		u.fails, u.failStart = 0, now
	}
	u.fails++
	markDown := u.fails >= p.maxFails && !now.Before(u.downUntil)
	if markDown {
		u.downUntil = now.Add(p.failTimeout)
		u.fails = 0
	}
	u.mu.Unlock()
	if markDown {
		p.log.Warn("backend out of rotation", "backend", u.name, "for", p.failTimeout, "after_failed_dials", p.maxFails)
	}
}

func (p *pool) succeeded(u *upstream) {
	u.mu.Lock()
	u.fails = 0
	u.mu.Unlock()
}
