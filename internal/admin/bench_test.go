package admin_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// BenchmarkTunnelAPI measures the tunnel API with 1,000 tunnels open: a
// whole page of all of them (GET /tunnels?limit=1000), a sorted page of
// 100, one tunnel, and the dashboard's poll (/dashboard.json with nothing
// new, and the page itself). ns/op is the round trip over loopback HTTP,
// the server's work included; B/resp is the answer's size.
func BenchmarkTunnelAPI(b *testing.B) {
	ctx := testutil.Context(b, 5*time.Minute)
	r := newRig(b)
	h := r.withHistory()
	for i := range 1000 {
		c, _ := r.dial(ctx, []string{"/a", "/b"}[i%2])
		if i%10 == 0 {
			roundTrip(b, ctx, c, "warm")
		}
	}
	h.Sample(time.Now())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for _, c := range []struct{ name, path string }{
		{"all-1000", "/tunnels?limit=1000"},
		{"sorted-100", "/tunnels?sort=-bytes_in&limit=100"},
		{"one", "/tunnels/500"},
		{"dashboard-poll", "/dashboard.json?since=" + "9999999999999"},
		{"dashboard-page", "/"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int64
			for b.Loop() {
				resp, err := client.Get("http://" + r.admin + c.path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", c.path, resp.StatusCode)
				}
			}
			b.ReportMetric(float64(n), "B/resp")
		})
	}
}
