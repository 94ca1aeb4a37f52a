package sockio

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// waitStats waits until the engine holds want.
func waitStats(t *testing.T, ctx context.Context, e *Engine, want Stats) {
	t.Helper()
	for e.Stats() != want {
		select {
		case <-ctx.Done():
			t.Fatalf("engine holds %+v, want %+v", e.Stats(), want)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestIdleSidesPark guards parking: the pump of an idle raw side gives up
// its goroutine, and a parked side goes on as if nothing had happened:
// data wakes it (in order, none lost), it parks again, and a Close ends
// it.
func TestIdleSidesPark(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		if k.io != IORaw {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newEngine(t, Options{ParkAfter: 2 * time.Millisecond})
			side, peer := k.make(t, e)
			p := pump(side, nil)
			want := ""
			for _, msg := range []string{"one", "two", "three"} {
				waitStats(t, ctx, e, Stats{Raw: 1, Parked: 1})
				peer.Write([]byte(msg))
				want += msg
				waitData(t, ctx, p, want)
			}
			waitStats(t, ctx, e, Stats{Raw: 1, Parked: 1})
			side.Close()
			p.wait(t, ctx)
			if !errors.Is(p.rerr, net.ErrClosed) {
				t.Fatalf("parked side closed: ended with %v, want net.ErrClosed", p.rerr)
			}
			waitStats(t, ctx, e, Stats{})
			peerSeesEnd(t, peer)
		})
	}
}

// TestParkedSidesHoldNoGoroutine guards what parking is for: many idle
// sides, parked, hold no goroutine of their own.
func TestParkedSidesHoldNoGoroutine(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	ctx := testContext(t)
	e := newEngine(t, Options{ParkAfter: 2 * time.Millisecond})
	before := runtime.NumGoroutine()
	const n = 50
	var ps []*pumped
	var sides []Conn
	for range n {
		a, _ := tcpPair(t)
		side := e.Conn(a)
		sides = append(sides, side)
		ps = append(ps, pump(side, nil))
	}
	waitStats(t, ctx, e, Stats{Raw: n, Parked: n})
	if g := runtime.NumGoroutine() - before; g > n/10 {
		t.Errorf("%d goroutines more with %d sides parked, want next to none", g, n)
	}
	for i, side := range sides {
		side.Close()
		ps[i].wait(t, ctx)
	}
}

// TestTokensNeverReused guards the poller's tokens: a new registration
// never takes a token in use, even when the counter comes round to it.
// (Before, an int32 counter that wrapped gave a new side a parked side's
// token: the parked side's data then woke the other, and its own message
// never reached its peer.)
func TestTokensNeverReused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEngine(t, Options{ParkAfter: 2 * time.Millisecond})
	a, aPeer := tcpPair(t)
	sideA := e.Conn(a).(*rawConn)
	pa := pump(sideA, nil)
	waitStats(t, ctx, e, Stats{Raw: 1, Parked: 1})

	// The counter comes round: the next token would be A's.
	e.raw.mu.Lock()
	e.raw.next = sideA.tok - 1
	e.raw.mu.Unlock()
	b, bPeer := tcpPair(t)
	sideB := e.Conn(b).(*rawConn)
	if sideB.tok == sideA.tok {
		t.Fatalf("a new side got token %d, in use by a parked side", sideB.tok)
	}
	pb := pump(sideB, nil)
	waitStats(t, ctx, e, Stats{Raw: 2, Parked: 2})
	aPeer.Write([]byte("for A"))
	waitData(t, ctx, pa, "for A")
	bPeer.Write([]byte("for B"))
	waitData(t, ctx, pb, "for B")

	// Wrapped all the way round, past zero.
	e.raw.mu.Lock()
	e.raw.next = ^uint64(0)
	e.raw.mu.Unlock()
	c, _ := tcpPair(t)
	sideC := e.Conn(c).(*rawConn)
	if sideC.tok == 0 || sideC.tok == sideA.tok || sideC.tok == sideB.tok {
		t.Fatalf("after the wrap a side got token %d (A %d, B %d)", sideC.tok, sideA.tok, sideB.tok)
	}
	for _, s := range []Conn{sideA, sideB, sideC} {
		s.Close()
	}
	pa.wait(t, ctx)
	pb.wait(t, ctx)
}

// TestCloseRacingPark guards a Close that lands as a side is about to
// park, after the pump decided to and before the poller registered it:
// the side ends and the poller keeps nothing of it. (Before, such a
// Close left the ended side in the parker for good.)
func TestCloseRacingPark(t *testing.T) {
	// Not parallel: it sets the package's park hook.
	ctx := testContext(t)
	e := newEngine(t, Options{ParkAfter: 2 * time.Millisecond})
	a, aPeer := tcpPair(t)
	side := e.Conn(a).(*rawConn)
	closed := make(chan struct{})
	testHookPark = func(c *rawConn) {
		if c == side {
			c.Close()
			close(closed)
		}
	}
	t.Cleanup(func() { testHookPark = nil })
	p := pump(side, nil)
	<-closed
	p.wait(t, ctx)
	if !errors.Is(p.rerr, net.ErrClosed) {
		t.Errorf("ended with %v, want net.ErrClosed", p.rerr)
	}
	waitStats(t, ctx, e, Stats{})
	peerSeesEnd(t, aPeer)
}

// TestEngineCloseResumesParked guards an Engine closed under open sides:
// parked sides are taken up again and go on in the runtime's poller,
// reading to their end.
func TestEngineCloseResumesParked(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := New(Options{ParkAfter: 2 * time.Millisecond})
	a, peer := tcpPair(t)
	side := e.Conn(a)
	p := pump(side, nil)
	waitStats(t, ctx, e, Stats{Raw: 1, Parked: 1})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	peer.Write([]byte("still here"))
	waitData(t, ctx, p, "still here")
	peer.Write([]byte(" and more"))
	peer.Close()
	p.wait(t, ctx)
	if p.data.String() != "still here and more" || p.rerr != io.EOF {
		t.Fatalf("got %q then %v", p.data.String(), p.rerr)
	}
	side.Close()
	if st := e.Stats(); st != (Stats{}) {
		t.Fatalf("closed engine holds %+v", st)
	}
	// A side made after Close is portable.
	b, _ := tcpPair(t)
	if got := e.Conn(b).IO(); got != IOPortable {
		t.Fatalf("a side made after Close is %s", got)
	}
}

// TestPortableSwitch guards Options.Portable (WSSPROXY_RAWIO=0): every
// side is portable, sockets included.
func TestPortableSwitch(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{Portable: true})
	a, _ := tcpPair(t)
	side := e.Conn(a)
	defer side.Close()
	if side.IO() != IOPortable {
		t.Fatalf("IO() = %s with the raw engine off", side.IO())
	}
	if got, why := e.Mode(); got != IOPortable || why == "" {
		t.Fatalf("Mode() = %q, %q", got, why)
	}
}

// waitEndSeen waits until the poller has seen a raw side's end arrive
// (its own event, not the pump's read).
func waitEndSeen(t *testing.T, ctx context.Context, side Conn) {
	t.Helper()
	c, ok := side.(*rawConn)
	if !ok {
		return
	}
	for !c.mustRead.Load() {
		select {
		case <-ctx.Done():
			t.Fatal("the poller never saw the peer's end")
		case <-time.After(time.Millisecond):
		}
	}
}
