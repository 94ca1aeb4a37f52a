package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestForgedClientHeaders guards the headers a client cannot forge past
// the proxy, on both ways to the backend (the WebSocket handshake and plain
// HTTP): a single-address real_ip_header (CF-Connecting-IP) is dropped from
// an untrusted peer and set to the address the proxy believed for a trusted
// one; header names with "_" (X_Real_IP, X-Real_IP, X_Forwarded_For, which
// PHP and Workerman fold into X-Real-IP and X-Forwarded-For) are dropped
// unless the route sets underscores_in_headers.
func TestForgedClientHeaders(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	proxyFor := func(trusted []string) *env {
		return startProxy(t, proxy.Config{
			TrustedProxies: trusted,
			RealIPHeader:   "CF-Connecting-IP",
			Routes: []proxy.Route{
				{Path: "/wss", Backend: backend},
				{Path: "/underscores", Backend: backend, UnderscoresInHeaders: true},
			},
		})
	}
	untrusted := proxyFor(nil)
	trusted := proxyFor([]string{"127.0.0.1"}) // the test's own address
	forged := http.Header{
		"X_Real_IP":       {"6.6.6.6"},
		"X-Real_IP":       {"6.6.6.6"},
		"X_Forwarded_For": {"6.6.6.6"},
		"X_Session":       {"abc"},
	}
	for _, tc := range []struct {
		name   string
		e      *env
		path   string
		header http.Header
		want   map[string]string // "" means the backend must not see it
		// underscores: header names with "_" the backend must see; with
		// none listed it must see none.
		underscores []string
	}{
		{
			name: "untrusted peer's CF-Connecting-IP is dropped", e: untrusted, path: "/wss",
			header: http.Header{"Cf-Connecting-Ip": {"6.6.6.6"}},
			want:   map[string]string{"Cf-Connecting-Ip": "", "X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"},
		},
		{
			name: "untrusted peer's CF-Connecting-IP twice is dropped", e: untrusted, path: "/wss",
			header: http.Header{"Cf-Connecting-Ip": {"6.6.6.6", "7.7.7.7"}},
			want:   map[string]string{"Cf-Connecting-Ip": "", "X-Real-Ip": "127.0.0.1"},
		},
		{
			name: "trusted peer's CF-Connecting-IP is the address believed", e: trusted, path: "/wss",
			header: http.Header{"Cf-Connecting-Ip": {"198.51.100.7"}},
			want:   map[string]string{"Cf-Connecting-Ip": "198.51.100.7", "X-Real-Ip": "198.51.100.7", "X-Forwarded-For": "127.0.0.1"},
		},
		{
			name: "trusted peer's CF-Connecting-IP with a port is normalised", e: trusted, path: "/wss",
			header: http.Header{"Cf-Connecting-Ip": {"[2001:db8::7]:443"}},
			want:   map[string]string{"Cf-Connecting-Ip": "2001:db8::7", "X-Real-Ip": "2001:db8::7"},
		},
		{
			name: "trusted peer's malformed CF-Connecting-IP is replaced by the peer", e: trusted, path: "/wss",
			header: http.Header{"Cf-Connecting-Ip": {"<script>"}},
			want:   map[string]string{"Cf-Connecting-Ip": "127.0.0.1", "X-Real-Ip": "127.0.0.1"},
		},
		{
			name: "trusted peer without CF-Connecting-IP gets its own address", e: trusted, path: "/wss",
			want: map[string]string{"Cf-Connecting-Ip": "127.0.0.1", "X-Real-Ip": "127.0.0.1"},
		},
		{
			name: "underscored names are dropped", e: untrusted, path: "/wss", header: forged,
			want: map[string]string{"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"},
		},
		{
			name: "underscored names are dropped behind a trusted proxy", e: trusted, path: "/wss",
			header: cloneWith(forged, "Cf-Connecting-Ip", "198.51.100.7"),
			want:   map[string]string{"X-Real-Ip": "198.51.100.7", "Cf-Connecting-Ip": "198.51.100.7"},
		},
		{
			name: "underscores_in_headers keeps them", e: untrusted, path: "/underscores", header: forged,
			want:        map[string]string{"X-Real-Ip": "127.0.0.1", "X_session": "abc", "X_real_ip": "6.6.6.6"},
			underscores: []string{"X_real_ip", "X-Real_ip", "X_forwarded_for", "X_session"},
		},
	} {
		for _, way := range []string{"websocket", "plain"} {
			t.Run(tc.name+"/"+way, func(t *testing.T) {
				before := rec.count()
				h := cloneWith(tc.header, "X-Test", "1") // never nil
				if way == "websocket" {
					c := tc.e.mustDial(ctx, tc.path, &websocket.DialOptions{HTTPHeader: h})
					roundTrip(t, ctx, c, websocket.MessageText, []byte("x"))
					c.Close(websocket.StatusNormalClosure, "")
				} else {
					req, _ := http.NewRequestWithContext(ctx, "GET", tc.e.url("https", tc.path), nil)
					req.Header = h
					resp, err := tc.e.client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if n := rec.count(); n != before+1 {
					t.Fatalf("backend got %d requests, want 1", n-before)
				}
				got := rec.last(t).Header
				if got.Get("X-Test") != "1" {
					t.Fatalf("not this test's request: %v", got)
				}
				for name, want := range tc.want {
					if v := strings.Join(got[name], ","); v != want {
						t.Errorf("%s: backend got %q, want %q", name, v, want)
					}
				}
				var seen []string
				for name := range got {
					if strings.Contains(name, "_") {
						seen = append(seen, name)
					}
				}
				if !sameSet(seen, tc.underscores) {
					t.Errorf("backend got underscored headers %q, want %q", seen, tc.underscores)
				}
			})
		}
	}
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// cloneWith is a copy of h with name set to v.
func cloneWith(h http.Header, name, v string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h[name] = []string{v}
	return h
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[string]bool{}
	for _, s := range a {
		in[s] = true
	}
	for _, s := range b {
		if !in[s] {
			return false
		}
	}
	return true
}
