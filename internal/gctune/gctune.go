// Package gctune paces the garbage collector for a process that holds many
// idle tunnels and makes handshakes at the same time.
//
// Go's default (GOGC=100) lets the heap grow by as much as is live (heap,
// stacks and globals that the collector scans) before the next
// collection, and by at least 4 MiB. Both ends cost wssproxy: with few
// tunnels open the live heap is a few MiB, a handshake allocates about
// 60 KiB, and the 4 MiB floor is reached every few dozen handshakes, each
// collection's fixed costs included; with 9,000 idle tunnels the heap
// holds up to one live heap of garbage besides, which a fresh process
// measures as RSS per tunnel (issue 16's figures are in
// examples/bench/PERFORMANCE.md). Start sets GOGC after every collection
// so that the headroom is half the scanned live size, and never less
// than gcMinHeadroom: fewer collections while little is live, less
// garbage held while much is. It costs CPU where much is live: a
// collection marks the whole live heap, twice as often as at GOGC=100.
//
// A GOGC in the environment is the operator's choice: Start then does
// nothing. GOMEMLIMIT works as usual on top of either.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

const (
	gcMinHeadroom = 16 << 20
	gcMinPercent  = 50  // headroom = half the scanned live size
	gcMaxPercent  = 800 // while almost nothing is live
)

// gcPercent is the GOGC that gives a heap whose collector scans scanned
// bytes (live heap, stacks, globals) the headroom described above.
func gcPercent(scanned uint64) int {
	if scanned == 0 {
		return gcMaxPercent
	}
	p := uint64(gcMinHeadroom) * 100 / scanned
	return int(min(max(p, gcMinPercent), gcMaxPercent))
}

// Start starts the tuning, unless GOGC is set; it runs for the life of
// the process, once after each collection (on the finalizer goroutine).
// Call it once, from main: it sets the process's GOGC.
func Start() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	t := &gcTuner{samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	t.last = debug.SetGCPercent(gcPercent(0))
	t.arm()
}

type gcTuner struct {
	samples []metrics.Sample
	last    int
}

// gcSentinel is garbage from the moment it is made: its finalizer runs
// after the next collection. Large enough to stay out of the tiny
// allocator, whose blocks are freed together.
type gcSentinel struct {
	t *gcTuner
	_ [16]byte
}

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) { s.t.tune() })
}

func (t *gcTuner) tune() {
	metrics.Read(t.samples)
	var scanned uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			scanned += s.Value.Uint64()
		}
	}
	if p := gcPercent(scanned); p != t.last {
		debug.SetGCPercent(p)
		t.last = p
	}
	t.arm()
}
