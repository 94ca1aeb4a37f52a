package importconf

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// nginxDuration reads nginx's time syntax: "60", "60s", "5m", "1h30m",
// "500ms", "1d" (no unit means seconds).
func nginxDuration(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "M": 30 * 24 * time.Hour, "y": 365 * 24 * time.Hour}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, false
		}
		n, _ := strconv.Atoi(s[:i])
		s = s[i:]
		j := 0
		for j < len(s) && (s[j] < '0' || s[j] > '9') {
			j++
		}
		u := s[:j]
		s = s[j:]
		if u == "" {
			u = "s"
		}
		d, ok := units[u]
		if !ok {
			return 0, false
		}
		total += time.Duration(n) * d
	}
	return total, true
}

// goDuration writes d the short way TOML readers expect: "90s", "5m", "1h".
func goDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func plural(d time.Duration) string {
	return strings.TrimSuffix(strings.ReplaceAll(goDuration(d), "s", " s"), " ")
}

// listenAddr turns a listen address ("443", "*:443", "[::]:443",
// "10.0.0.1:443", "10.0.0.1") into host:port; "[::]" and "*" become the
// empty host, which takes IPv4 and IPv6 alike.
func listenAddr(s, defPort string) (string, bool) {
	if strings.HasPrefix(s, "unix:") || s == "" {
		return "", false
	}
	if _, err := strconv.Atoi(s); err == nil {
		return ":" + s, true
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), defPort
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", false
	}
	if host == "*" || host == "::" || host == "_default_" {
		host = ""
	}
	return net.JoinHostPort(host, port), true
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// tlsProtocols notes what a protocol list (enabled, in the order
// written) changes: wssproxy offers TLS 1.2 and 1.3, or 1.3 alone.
func (t *translation) tlsProtocols(n *node, enabled []string) {
	t.tlsProtocolsAs(n, n.name, enabled)
}

// tlsProtocolsAs is tlsProtocols with the directive named as label.
func (t *translation) tlsProtocolsAs(n *node, label string, enabled []string) {
	var old []string
	has12, has13 := false, false
	for _, p := range enabled {
		switch strings.ToLower(p) {
		case "tlsv1.2":
			has12 = true
		case "tlsv1.3":
			has13 = true
		default:
			old = append(old, p)
		}
	}
	switch {
	case has13 && !has12 && len(old) == 0:
		t.cfg.minVersion = "1.3"
	case len(old) > 0:
		t.noteOnce(n, "%s %s dropped: wssproxy offers TLS 1.2 and 1.3 only", label, strings.Join(old, " "))
	case has12 && !has13:
		t.noteOnce(n, "%s: wssproxy offers TLS 1.3 as well as 1.2 (min_version = \"1.3\" would refuse 1.2)", n.text())
	default:
		t.builtIn(n, "TLS 1.2 and 1.3 are wssproxy's default")
	}
}

// abs resolves a relative file path the way the server did: against the
// folder of the imported configuration.
func (t *translation) abs(top, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	a, err := filepath.Abs(filepath.Join(filepath.Dir(top), p))
	if err != nil {
		return p
	}
	return a
}

// hostName turns a server name into a route host, or says why not.
func hostName(s string) (string, string) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case strings.HasPrefix(s, "~"):
		return "", "a regular expression; routes name one host or *.domain"
	case strings.HasSuffix(s, ".*"):
		return "", "a trailing wildcard; routes name one host or *.domain"
	case strings.Contains(s, "$"):
		return "", "a variable"
	case strings.ContainsAny(s, ":/ "):
		return "", "not a host name"
	}
	for _, r := range s {
		if r > 0x7f {
			return "", "not an ASCII host name: write its xn-- (punycode) form"
		}
	}
	if strings.Contains(strings.TrimPrefix(s, "*."), "*") {
		return "", "a wildcard inside the name"
	}
	return s, ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
