package xconnect

import "testing"

// TestWithXConnect guards how GODEBUG is rewritten: http2xconnect added
// or removed, every other setting kept in order.
func TestWithXConnect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		on       bool
		out      string
		changed  bool
	}{
		{"empty, on", "", true, "http2xconnect=1", true},
		{"empty, off", "", false, "", false},
		{"others kept", "madvdontneed=1,gctrace=1", true, "madvdontneed=1,gctrace=1,http2xconnect=1", true},
		{"already on", "x=1,http2xconnect=1", true, "x=1,http2xconnect=1", false},
		{"a 0 replaced", "http2xconnect=0,x=1", true, "x=1,http2xconnect=1", true},
		{"removed", "x=1,http2xconnect=1,y=2", false, "x=1,y=2", true},
		{"a 0 is off already", "http2xconnect=0", false, "http2xconnect=0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := WithXConnect(tc.in, tc.on)
			if out != tc.out || changed != tc.changed {
				t.Errorf("WithXConnect(%q, %v) = %q, %v; want %q, %v", tc.in, tc.on, out, changed, tc.out, tc.changed)
			}
		})
	}
}
