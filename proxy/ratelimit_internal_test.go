package proxy

import "testing"

// TestPerIPLimiterShared guards message_rate_per_ip's table: the tunnels
// of one client address on a route share one limiter, another address
// has its own, and each entry goes when the last tunnel that holds it
// gives it back, so the table does not grow with addresses seen.
func TestPerIPLimiterShared(t *testing.T) {
	t.Parallel()
	spec := compileLimits("route[1]", &Route{MessageRate: 5, MessageRatePerIP: 10}, func(err error) { t.Fatal(err) })
	a1, releaseA1 := spec.limit("192.0.2.1")
	a2, releaseA2 := spec.limit("192.0.2.1")
	b, releaseB := spec.limit("2001:db8::1")
	if a1.PerIP == nil || a1.PerIP != a2.PerIP || b.PerIP == a1.PerIP {
		t.Fatalf("per-address limiters: %p %p %p; want the first two shared, the third its own", a1.PerIP, a2.PerIP, b.PerIP)
	}
	if a1.Messages == a2.Messages || a1.PerIP.Limit() != 10 || a1.Messages.Limit() != 5 {
		t.Fatal("message_rate's limiter is per tunnel, message_rate_per_ip's per address")
	}
	releaseA1()
	if n := len(spec.perIP.byIP); n != 2 {
		t.Fatalf("%d addresses after one of two tunnels of 192.0.2.1 ended, want 2", n)
	}
	if a3, _ := spec.limit("192.0.2.1"); a3.PerIP != a2.PerIP {
		t.Fatal("a new tunnel of 192.0.2.1 does not share the open one's limiter")
	}
	releaseA2()
	releaseB()
	if n := len(spec.perIP.byIP); n != 1 {
		t.Fatalf("%d addresses held, want 1 (the third tunnel of 192.0.2.1)", n)
	}
}
