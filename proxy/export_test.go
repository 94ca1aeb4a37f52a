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
