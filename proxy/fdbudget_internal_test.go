package proxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// TestDescriptorShares guards the descriptor budget's arithmetic
// (fdbudget.go): an address holds at most its share, others what is left
// of the budget; a descriptor charged to no address (a trusted proxy's
// connection, a request with no known client) counts against the budget
// only; a place is given back to what it was charged to even when the
// share changed meanwhile (a reload); and a full budget refuses before it
// looks at the address, so refusals leave nothing in memory.
func TestDescriptorShares(t *testing.T) {
	t.Parallel()
	share := 4
	b := &connBudget{max: func() int { return 10 }, share: func() int { return share }}
	a, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var held []netip.Addr
	take := func(addr netip.Addr, wantOK, wantOverShare bool) {
		t.Helper()
		h, ok, over := b.acquire(addr)
		if ok != wantOK || over != wantOverShare {
			t.Fatalf("acquire(%v) with %d open: ok %v over share %v, want %v %v", addr, b.open.Load(), ok, over, wantOK, wantOverShare)
		}
		if ok {
			held = append(held, h)
		}
	}
	for range 4 {
		take(a, true, false)
	}
	take(a, false, true)
	take(netip.Addr{}, true, false) // no address: the budget only
	for range 4 {
		take(c, true, false)
	}
	take(netip.Addr{}, true, false)
	// Full: refused as full, not for the address's share, and a new
	// address is not remembered.
	take(netip.MustParseAddr("192.0.2.3"), false, false)
	if len(b.byAddr) != 2 || b.open.Load() != 10 {
		t.Fatalf("full budget: %d addresses, %d open; want 2, 10", len(b.byAddr), b.open.Load())
	}
	share = 0 // a reload turns shares off: what was charged is still given back
	for _, h := range held {
		b.release(h)
	}
	if len(b.byAddr) != 0 || b.open.Load() != 0 {
		t.Fatalf("all released: %v, %d open", b.byAddr, b.open.Load())
	}
}

// TestFDRefusal guards how the descriptor budget's refusals and the
// proxy's own EMFILE and ENFILE (as a dial returns them) are answered:
// 503 with their kind, never the backend's 502.
func TestFDRefusal(t *testing.T) {
	t.Parallel()
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		kind string // "": not the budget's
	}{
		{"over the budget", errNoFDs, kindFDs},
		{"over the share", errNoFDsPerIP, kindFDsPerIP},
		{"EMFILE", dialErr(syscall.EMFILE), kindOwnFDs},
		{"ENFILE", dialErr(syscall.ENFILE), kindOwnFDs},
		{"refused", dialErr(syscall.ECONNREFUSED), ""},
		{"other", errors.New("backend said no"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, kind, _, ok := fdRefusal(tc.err)
			if ok != (tc.kind != "") || kind != tc.kind || ok && status != 503 {
				t.Errorf("fdRefusal(%v) = %d %q %v, want %q", tc.err, status, kind, ok, tc.kind)
			}
		})
	}
}
