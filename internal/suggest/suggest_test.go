package suggest

import "testing"

// TestNearest guards what counts as a near miss: up to two edits, letter
// case aside, the closest candidate; nothing for a name too far from all,
// or too short to tell.
func TestNearest(t *testing.T) {
	t.Parallel()
	keys := []string{"backend", "backends", "listen", "route", "cert", "key"}
	for _, tc := range []struct{ name, want string }{
		{"bakend", "backend"},
		{"Backend", "backend"},
		{"backendz", "backend"}, // one edit from backend, one from backends: the first
		{"lsten", "listen"},
		{"routes", "route"},
		{"crt", "cert"},
		{"kye", "key"},
		{"proxy", ""},
		{"x", ""},
		{"", ""},
	} {
		if got := Nearest(keys, tc.name); got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
