package proxy

import (
	"testing"
	"time"
)

// TestJWKSMaxAge guards how long a key set is kept by its Cache-Control:
// its max-age, within a minute and a day; an hour without one; a minute
// for no-cache or no-store.
func TestJWKSMaxAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cc   string
		want time.Duration
	}{
		{"", time.Hour},
		{"public, max-age=600", 10 * time.Minute},
		{"max-age=\"7200\", must-revalidate", 2 * time.Hour},
		{"MAX-AGE=5", time.Minute},
		{"max-age=9999999", 24 * time.Hour},
		{"max-age=9223372036854775807", 24 * time.Hour},
		{"no-cache", time.Minute},
		{"max-age=600, no-store", time.Minute},
		{"max-age=-1", time.Hour},
		{"max-age=abc", time.Hour},
	} {
		if got := maxAge(tc.cc); got != tc.want {
			t.Errorf("maxAge(%q) = %v, want %v", tc.cc, got, tc.want)
		}
	}
}
