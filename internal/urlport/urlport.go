// Package urlport is the one place that knows a URL scheme's default port,
// for the proxy (backend addresses, Origin matching), wssproxy (its startup
// checks, probe) and wsload.
package urlport

import (
	"net"
	"net/url"
)

// Default is the port a URL of scheme means when it names none: 443 for
// wss and https, 80 for ws and http, "" for any other scheme.
func Default(scheme string) string {
	switch scheme {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

// HostPort is the host:port to dial for u: its own port, else its
// scheme's default.
func HostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), Default(u.Scheme))
}
