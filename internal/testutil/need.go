package testutil

import (
	"os"
	"testing"
)

// Need reports a missing prerequisite of a test that runs an outside
// program (Node, Chromium, HAProxy): the test skips and says what is
// missing, unless WSSPROXY_E2E=1 (as .ci/run sets), which makes it a
// failure.
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("WSSPROXY_E2E") == "1" {
		t.Fatalf("WSSPROXY_E2E=1 but %s", what)
	}
	t.Skipf("%s (set WSSPROXY_E2E=1 to make this a failure)", what)
}
