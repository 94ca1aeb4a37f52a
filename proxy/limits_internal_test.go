package proxy

import (
	"net/http"
	"net/netip"
	"runtime"
	"testing"
)

// TestLimiterFullRemembersNothing guards issue 25's item 4: while the
// proxy is at max_connections, a refused handshake from a new address
// leaves no entry in the per-address table, so a million refusals from a
// million addresses (one IPv6 /64 holds far more) cost no memory. The
// table is checked by its size; the heap after a GC is logged (go test -v)
// for the record, not asserted.
func TestLimiterFullRemembersNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"max_connections", Config{MaxConnections: 2}},
		{"max_connections with per-ip limits and a rate", Config{MaxConnections: 2, MaxConnectionsPerIP: 1, HandshakeRatePerIP: 1, HandshakeBurstPerIP: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter()
			l.configure(&tc.cfg)
			for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
				if status, kind, _ := l.acquire(ip); status != 0 {
					t.Fatalf("admitting %s: %d %s", ip, status, kind)
				}
			}
			before := heapAfterGC()
			const refusals = 1_000_000
			addr := netip.MustParseAddr("2001:db8::").As16()
			for i := range refusals {
				addr[12], addr[13], addr[14], addr[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				ip := netip.AddrFrom16(addr).String()
				if status, kind, _ := l.acquire(ip); status != http.StatusServiceUnavailable || kind != "limit-connections" {
					t.Fatalf("refusal %d (%s): %d %s, want 503 limit-connections", i, ip, status, kind)
				}
			}
			after := heapAfterGC()
			l.mu.Lock()
			n := len(l.perIP)
			l.mu.Unlock()
			t.Logf("per-address entries after %d refusals: %d; heap after GC %.1f MiB -> %.1f MiB",
				refusals, n, float64(before)/(1<<20), float64(after)/(1<<20))
			if n > 2 {
				t.Errorf("after %d refusals the per-address table holds %d entries, want the 2 admitted", refusals, n)
			}
			runtime.KeepAlive(l)
		})
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
