package gctune

import "testing"

// TestGCPercent guards the GC pacing's shape: at least gcMinHeadroom of
// headroom while little is live, half the live size when much is, within
// the bounds.
func TestGCPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		scanned uint64
		want    int
	}{
		{"nothing live", 0, gcMaxPercent},
		{"1 MiB live: capped", 1 << 20, gcMaxPercent},
		{"4 MiB live: 16 MiB headroom", 4 << 20, 400},
		{"16 MiB live", 16 << 20, 100},
		{"32 MiB live: half of it", 32 << 20, gcMinPercent},
		{"1 GiB live: half of it", 1 << 30, gcMinPercent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := gcPercent(tt.scanned); got != tt.want {
				t.Errorf("gcPercent(%d) = %d, want %d", tt.scanned, got, tt.want)
			}
		})
	}
}
