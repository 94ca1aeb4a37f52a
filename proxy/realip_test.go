package proxy

import (
	"net/http"
	"testing"
)

// TestClientAddress guards how the client's address is worked out: only a
// trusted peer's header is believed, X-Forwarded-For is walked from the
// right past trusted hops (so a spoofed leftmost entry is ignored), IPv6
// and ports are understood, and malformed input never yields an address
// the client chose.
func TestClientAddress(t *testing.T) {
	t.Parallel()
	st := &state{cfg: Config{}}
	st.trusted, _ = parsePrefixes([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"})
	cf := &state{cfg: Config{RealIPHeader: "CF-Connecting-IP"}, trusted: st.trusted}
	for _, tc := range []struct {
		name    string
		st      *state
		peer    string
		header  string
		value   []string
		wantIP  string
		wantXFF string
	}{
		{"untrusted peer, spoofed XFF", st, "203.0.113.5:1000", "X-Forwarded-For", []string{"1.1.1.1"}, "203.0.113.5", "203.0.113.5"},
		{"untrusted peer, spoofed X-Real-IP", st, "203.0.113.5:1000", "X-Real-Ip", []string{"1.1.1.1"}, "203.0.113.5", "203.0.113.5"},
		{"trusted peer, no header", st, "10.1.2.3:1000", "", nil, "10.1.2.3", "10.1.2.3"},
		{"trusted peer, one hop", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"198.51.100.7"}, "198.51.100.7", "198.51.100.7, 10.1.2.3"},
		{"spoof left of the real client", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"6.6.6.6, 198.51.100.7, 10.9.9.9"}, "198.51.100.7", "6.6.6.6, 198.51.100.7, 10.9.9.9, 10.1.2.3"},
		{"spoof in a second header line", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7", "6.6.6.6, 198.51.100.7, 10.1.2.3"},
		{"all hops trusted", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"10.0.0.1, 192.0.2.1"}, "10.0.0.1", "10.0.0.1, 192.0.2.1, 10.1.2.3"},
		{"garbage stops the walk", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"6.6.6.6, not-an-ip, 10.0.0.7"}, "10.0.0.7", "6.6.6.6, not-an-ip, 10.0.0.7, 10.1.2.3"},
		{"only garbage", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"<script>"}, "10.1.2.3", "<script>, 10.1.2.3"},
		{"entries with ports", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"198.51.100.7:5555, 10.0.0.1:80"}, "198.51.100.7", "198.51.100.7:5555, 10.0.0.1:80, 10.1.2.3"},
		{"IPv6 client", st, "[2001:db8::9]:443", "X-Forwarded-For", []string{"2a00:1450::1, [2001:db8::2]:80"}, "2a00:1450::1", "2a00:1450::1, [2001:db8::2]:80, 2001:db8::9"},
		{"IPv6 peer untrusted", st, "[2a00::1]:443", "X-Forwarded-For", []string{"1.1.1.1"}, "2a00::1", "2a00::1"},
		{"IPv4-mapped peer", st, "[::ffff:10.1.2.3]:1", "X-Forwarded-For", []string{"198.51.100.7"}, "198.51.100.7", "198.51.100.7, 10.1.2.3"},
		{"zone is not an address", st, "10.1.2.3:1000", "X-Forwarded-For", []string{"fe80::1%eth0"}, "10.1.2.3", "fe80::1%eth0, 10.1.2.3"},
		{"CF-Connecting-IP", cf, "10.1.2.3:1000", "Cf-Connecting-Ip", []string{"198.51.100.7"}, "198.51.100.7", "10.1.2.3"},
		{"CF-Connecting-IP twice", cf, "10.1.2.3:1000", "Cf-Connecting-Ip", []string{"1.1.1.1", "198.51.100.7"}, "10.1.2.3", "10.1.2.3"},
		{"CF-Connecting-IP from an untrusted peer", cf, "203.0.113.5:1", "Cf-Connecting-Ip", []string{"1.1.1.1"}, "203.0.113.5", "203.0.113.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			if tc.header != "" {
				r.Header[tc.header] = tc.value
			}
			got := tc.st.client(r)
			if got.ip != tc.wantIP || got.xff != tc.wantXFF {
				t.Errorf("got ip %q xff %q, want %q %q", got.ip, got.xff, tc.wantIP, tc.wantXFF)
			}
		})
	}
}

// FuzzClientAddress guards that no header makes the walk panic or return
// an address the untrusted part of the chain chose when a trusted hop
// stands to its right.
func FuzzClientAddress(f *testing.F) {
	f.Add("6.6.6.6, 198.51.100.7, 10.9.9.9")
	f.Add("[2001:db8::1]:80,,, ,")
	f.Add("")
	st := &state{}
	st.trusted, _ = parsePrefixes([]string{"10.0.0.0/8"})
	f.Fuzz(func(t *testing.T, xff string) {
		r := &http.Request{RemoteAddr: "10.0.0.1:1", Header: http.Header{"X-Forwarded-For": {xff}}}
		got := st.client(r)
		if got.ip == "" {
			t.Fatal("no address")
		}
		if _, ok := parseHostAddr(got.ip); !ok {
			t.Fatalf("not an address: %q", got.ip)
		}
	})
}
