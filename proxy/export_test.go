package proxy

import (
	"testing"
	"time"
)

// SetCloseGrace makes the wait for a peer's close reply d until the test
// ends, so that a test can tell a reply seen from a wait run out.
func SetCloseGrace(t testing.TB, d time.Duration) {
	old := closeGrace
	closeGrace = d
	t.Cleanup(func() { closeGrace = old })
}

// SetCheckPeriod makes the check on waiting pumps run every d until the
// test ends: pumps then park after 4d of quiet.
func SetCheckPeriod(t testing.TB, d time.Duration) {
	old := checkPeriod.Swap(int64(d))
	t.Cleanup(func() { checkPeriod.Store(old) })
}

// ParkedSides is the number of tunnel sides the parker watches.
func ParkedSides() int {
	n := 0
	forEachParked(func(*side) { n++ })
	return n
}

// SetCheckPeriodAll is SetCheckPeriod for the whole test binary.
func SetCheckPeriodAll(d time.Duration) { checkPeriod.Store(int64(d)) }

// CheckRuns is how many times the check on waiting pumps has run.
func CheckRuns() int64 { return checkRuns.Load() }
