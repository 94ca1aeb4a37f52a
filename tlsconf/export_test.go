package tlsconf

import "time"

// What the tests reach that the package does not export.
var (
	Fingerprint   = fingerprint
	ExpiryWarning = expiryWarning
)

// SetACMETiming shortens m's renewal loop for tests: renewal info is
// asked for again after poll at the latest (Pebble always says 6 hours),
// a failed order is retried after retry. Call it before Watch.
func SetACMETiming(m *Manager, poll, retry time.Duration) {
	m.acme.timing.pollMax = poll
	m.acme.timing.retryMin = retry
	m.acme.timing.retryMax = retry
}
