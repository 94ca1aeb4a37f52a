package urlport

import (
	"net/url"
	"testing"
)

// TestHostPort guards the default ports (443 for wss and https, 80 for ws
// and http, none for other schemes) and that a URL's own port wins,
// IPv6 literals kept in brackets.
func TestHostPort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, want, port string
	}{
		{"wss", "wss://chat.example.com/wss", "chat.example.com:443", "443"},
		{"https", "https://chat.example.com/", "chat.example.com:443", "443"},
		{"ws", "ws://127.0.0.1/x", "127.0.0.1:80", "80"},
		{"http", "http://[::1]/", "[::1]:80", "80"},
		{"own port", "wss://chat.example.com:8443/wss", "chat.example.com:8443", "443"},
		{"other scheme", "chrome-extension://abc/", "abc:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := HostPort(u); got != tc.want {
				t.Errorf("HostPort(%s) = %q, want %q", tc.url, got, tc.want)
			}
			if got := Default(u.Scheme); got != tc.port {
				t.Errorf("Default(%s) = %q, want %q", u.Scheme, got, tc.port)
			}
		})
	}
}
