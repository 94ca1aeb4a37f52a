package importconf

import (
	"fmt"
	"strconv"
	"strings"
)

// toml writes the configuration: top-level keys, [tls], [redirect], then
// one [[route]] per route with a comment naming its source.
func (c *config) toml() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# wssproxy configuration imported from %s by `wssproxy import`.\n", c.source)
	b.WriteString("# What changed or was dropped went to stderr. Check: wssproxy -t -config FILE\n")
	kv := func(indent, k, v string) { fmt.Fprintf(&b, "%s%s = %s\n", indent, k, v) }
	b.WriteString("\n")
	if c.listen != "" {
		kv("", "listen", quote(c.listen))
	}
	if len(c.trustedProxies.list) > 0 {
		kv("", "trusted_proxies", list(c.trustedProxies.list))
	}
	if c.realIPHeader != "" {
		kv("", "real_ip_header", quote(c.realIPHeader))
	}
	if c.proxyProtocol {
		kv("", "proxy_protocol", "true")
		kv("", "proxy_protocol_from", list(c.proxyProtocolFrom))
	}
	if c.proxyProtocolTODO {
		b.WriteString("# The listener took PROXY protocol headers: name the load balancers that send them.\n")
		b.WriteString("# proxy_protocol = true\n")
		b.WriteString("# proxy_protocol_from = [\"10.0.0.0/8\"]\n")
	}
	if c.maxConns > 0 {
		kv("", "max_connections", strconv.Itoa(c.maxConns))
	}
	if c.maxConnsPerIP > 0 {
		kv("", "max_connections_per_ip", strconv.Itoa(c.maxConnsPerIP))
	}
	if c.dialTimeout != "" {
		kv("", "dial_timeout", quote(c.dialTimeout))
	}
	if c.tlsCert != "" || c.minVersion != "" || c.hsts != "" {
		b.WriteString("\n[tls]\n")
		if c.tlsCert != "" {
			kv("", "cert", quote(c.tlsCert))
			kv("", "key", quote(c.tlsKey))
		}
		if c.minVersion != "" {
			kv("", "min_version", quote(c.minVersion))
		}
		if c.hsts != "" {
			kv("", "hsts", quote(c.hsts))
		}
	}
	for _, p := range c.certs {
		b.WriteString("\n[[tls.certificate]]\n")
		kv("", "cert", quote(p[0]))
		kv("", "key", quote(p[1]))
	}
	if c.redirect != "" {
		b.WriteString("\n[redirect]\n")
		kv("", "listen", quote(c.redirect))
	}
	for _, r := range c.routes {
		fmt.Fprintf(&b, "\n# %s\n[[route]]\n", r.from)
		kv("", "path", quote(r.path))
		if r.host != "" {
			kv("", "host", quote(r.host))
		}
		switch {
		case r.backend != "":
			kv("", "backend", quote(r.backend))
		case len(r.backends) > 0:
			kv("", "backends", list(r.backends))
		case r.static != "":
			kv("", "static", quote(r.static))
		}
		if r.balance != "" {
			kv("", "balance", quote(r.balance))
		}
		if r.maxFails != nil {
			kv("", "max_fails", strconv.Itoa(*r.maxFails))
		}
		if r.failTimeout != "" {
			kv("", "fail_timeout", quote(r.failTimeout))
		}
		if r.stripPrefix {
			kv("", "strip_prefix", "true")
		}
		if r.backendCA != "" {
			kv("", "backend_ca", quote(r.backendCA))
		}
		if r.backendName != "" {
			kv("", "backend_server_name", quote(r.backendName))
		}
		if len(r.setHeaders) > 0 {
			var parts []string
			for _, h := range r.setHeaders {
				parts = append(parts, key(h[0])+" = "+quote(h[1]))
			}
			kv("", "set_headers", "{ "+strings.Join(parts, ", ")+" }")
		}
		if len(r.removeHeaders) > 0 {
			kv("", "remove_headers", list(r.removeHeaders))
		}
		if r.idleTimeout != "" {
			kv("", "idle_timeout", quote(r.idleTimeout))
		}
		if r.sendTimeout != "" {
			kv("", "send_timeout", quote(r.sendTimeout))
		}
		if r.forwardAuth != "" {
			kv("", "forward_auth", quote(r.forwardAuth))
		}
		if len(r.forwardAuthHeaders) > 0 {
			kv("", "forward_auth_headers", list(r.forwardAuthHeaders))
		}
	}
	return []byte(b.String())
}

// quote is a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func list(vs []string) string {
	var q []string
	for _, v := range vs {
		q = append(q, quote(v))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// key is a bare TOML key when it can be, quoted otherwise.
func key(k string) string {
	for _, c := range k {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return quote(k)
		}
	}
	if k == "" {
		return `""`
	}
	return k
}
