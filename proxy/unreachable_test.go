package proxy_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestUnreachable guards the startup check of each route's backends (what
// cmd logs as "backend not reachable now"): every entry of backends is
// dialed, as for backend, and only those refusing are returned, by name as
// configured; a static route and a route out of range have none.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	live := echoBackend(t, echo.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String()
	ln.Close()
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{
		{Path: "/static", Static: t.TempDir()},
		{Path: "/one", Backend: dead},
		{Path: "/many", Backends: []string{live, dead + " weight=2"}},
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, tc := range []struct {
		name  string
		route int
		want  []string
	}{
		{"static", 0, nil},
		{"backend", 1, []string{dead}},
		{"backends", 2, []string{dead}},
		{"out of range", 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, b := range srv.Unreachable(ctx, tc.route) {
				if b.Err == nil {
					t.Errorf("%s: no error", b.Backend)
				}
				got = append(got, b.Backend)
			}
			if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
				t.Errorf("Unreachable(%d) = %q, want %q", tc.route, got, tc.want)
			}
		})
	}
}
