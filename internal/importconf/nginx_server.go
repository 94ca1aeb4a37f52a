package importconf

// nginx server blocks: listeners, certificates, redirects, limits and the
// real client address.

import (
	"fmt"
	"strconv"
	"strings"
)

func (t *translation) ngxServer(n *node, parent scope) *server {
	s := &server{n: n, sc: t.scopeOf(n.block, parent)}
	for _, d := range n.block {
		switch {
		case scoped[d.name]:
		case d.name == "listen":
			l := listenDir{n: d}
			addr, ok := listenAddr(d.arg(0), "80")
			if !ok {
				t.dropped(d, "wssproxy listens on TCP addresses only")
				continue
			}
			l.addr = addr
			var other []string
			for _, p := range d.args[1:] {
				switch {
				case p == "ssl":
					l.ssl = true
				case p == "http2":
					t.noteOnce(d, "%s: http2: built in: pages are offered HTTP/2, and WebSockets stay on HTTP/1.1 as with nginx unless http2_websockets = true (RFC 8441)", d.text())
				case p == "proxy_protocol":
					l.pp = true
				case p == "default_server" || p == "default":
					l.dflt = true
				default:
					other = append(other, p)
				}
			}
			if len(other) > 0 {
				t.noteOnce(d, "%s: %s dropped: no wssproxy equivalent (one listener takes IPv4 and IPv6)", d.text(), strings.Join(other, " "))
			}
			s.listens = append(s.listens, l)
		case d.name == "server_name":
			s.names, s.nameNode = append(s.names, d.args...), d
		case d.name == "location" && d.hasBlock:
			s.locations = append(s.locations, d)
		case d.name == "return":
			if isHTTPSRedirect(d) {
				s.redirect = d
			} else {
				s.drops = append(s.drops, d)
			}
		case d.name == "if" && d.hasBlock:
			if len(d.block) == 1 && d.block[0].name == "return" && isHTTPSRedirect(d.block[0]) {
				s.redirect = d.block[0]
				s.ifRedirects = append(s.ifRedirects, d)
			} else {
				t.dropped(d, "if blocks are not translated")
			}
		default:
			t.ngxOther(d)
		}
	}
	if len(s.listens) == 0 {
		s.listens = []listenDir{{n: n, addr: ":80"}} // nginx's default
	}
	for _, l := range s.listens {
		s.tls = s.tls || l.ssl
	}
	if s.sc.sslOn != nil && s.sc.sslOn.arg(0) == "on" {
		t.used[s.sc.sslOn] = true
		t.noteOnce(s.sc.sslOn, "%s: built in: wssproxy's listener is always TLS (nginx 1.25 removed this directive: listen … ssl)", s.sc.sslOn.text())
		s.tls = true
		for i := range s.listens {
			s.listens[i].ssl = true
		}
	}
	return s
}

func isHTTPSRedirect(n *node) bool {
	code := n.arg(0)
	return (code == "301" || code == "302" || code == "307" || code == "308") && strings.HasPrefix(n.arg(1), "https://")
}

// ngxServers turns the servers into the listener, certificates, redirect
// and routes.
func (t *translation) ngxServers(servers []*server) {
	var tlsServers []*server
	for _, s := range servers {
		if s.tls {
			tlsServers = append(tlsServers, s)
		}
	}
	if len(tlsServers) == 0 {
		for _, s := range servers {
			if s.redirect == nil && (len(s.locations) > 0 || s.sc.root != nil) {
				t.noteOnce(s.n, "server on %s is plain HTTP, and no server here has TLS: wssproxy serves its routes over TLS only (listen defaults to :8443, with a self-signed certificate until [tls] names one)", s.listens[0].addr)
				s.tls, s.fallback = true, true
				tlsServers = append(tlsServers, s)
			}
		}
	}
	// The default server of the TLS port takes requests for any host.
	var def *server
	for _, s := range tlsServers {
		for _, l := range s.listens {
			if l.ssl && l.dflt && def == nil {
				def = s
			}
		}
	}
	if def == nil && len(tlsServers) > 0 {
		def = tlsServers[0]
	}
	if def != nil && !def.fallback {
		for _, l := range def.listens {
			if l.ssl {
				t.cfg.listen = l.addr
				break
			}
		}
	}
	var ppFrom *node // a TLS listen with proxy_protocol
	for _, s := range servers {
		if !s.tls {
			t.ngxPlainServer(s)
			continue
		}
		for _, l := range s.listens {
			switch {
			case s.fallback:
			case !l.ssl:
				t.noteOnce(l.n, "%s dropped: wssproxy serves routes over TLS only; [redirect] sends plain-HTTP clients to https", l.n.text())
			case portOf(l.addr) != portOf(t.cfg.listen):
				t.noteOnce(l.n, "%s dropped: wssproxy has one TLS listener (listen = %q); this server's routes are served there", l.n.text(), t.cfg.listen)
			case l.addr != t.cfg.listen && !strings.HasPrefix(l.addr, "[::]") && !strings.HasPrefix(t.cfg.listen, ":"):
				t.noteOnce(l.n, "%s dropped: wssproxy has one TLS listener (listen = %q)", l.n.text(), t.cfg.listen)
			}
			if l.pp && l.ssl && ppFrom == nil {
				ppFrom = l.n
			}
		}
		var hosts []string
		if s == def {
			hosts = []string{""}
			if len(s.names) > 0 && !(len(s.names) == 1 && (s.names[0] == "_" || s.names[0] == "")) {
				t.noteOnce(s.nameNode, "%s: routes name no host: this is the default server of its port, which nginx uses for every host name", s.nameNode.text())
			}
		} else {
			var names uniq
			for _, name := range s.names {
				if name == "_" || name == "" {
					continue
				}
				if strings.HasPrefix(name, ".") {
					names.add(name[1:], "*"+name)
					continue
				}
				h, why := hostName(name)
				if why != "" {
					t.noteOnce(s.nameNode, "%s: %s dropped: %s", s.nameNode.text(), name, why)
					continue
				}
				if strings.HasPrefix(h, "*.") {
					t.noteOnce(s.nameNode, "%s: host %q matches one label (a.%s), nginx's any depth (a.b.%s)", s.nameNode.text(), h, h[2:], h[2:])
				}
				names.add(h)
			}
			if hosts = names.list; len(hosts) == 0 {
				t.noteOnce(s.n, "server dropped: it is not the default server and names no host a route can take")
				continue
			}
		}
		t.ngxCerts(s)
		for _, d := range s.drops {
			t.dropped(d, "routes do not answer by themselves: a path no route matches gets 404")
		}
		before := len(t.cfg.routes)
		hasRoot := false
		t.ngxAuthLocations(s)
		for _, loc := range s.locations {
			hasRoot = t.ngxLocation(loc, s.sc, hosts) || hasRoot
			if t.err != nil {
				return
			}
		}
		if s.sc.root != nil && !hasRoot && len(t.cfg.routes) >= before {
			t.used[s.sc.root] = true
			t.ngxStatic(s.n, s.sc, "/", false, hosts, fmt.Sprintf("%s:%d: server root (nginx serves it where no location matches)", s.n.file, s.n.line))
		}
	}
	t.ngxRealIP(ppFrom)
}

func (t *translation) ngxCerts(s *server) {
	for i, c := range s.sc.certs {
		t.used[c] = true
		var key string
		if i < len(s.sc.keys) {
			key = s.sc.keys[i].arg(0)
			t.used[s.sc.keys[i]] = true
		}
		cert := c.arg(0)
		if strings.Contains(cert, "$") || strings.HasPrefix(cert, "data:") {
			t.dropped(c, "certificates named by variables or inline data are not translated")
			continue
		}
		t.cfg.addCert(t.abs(c.file, cert), t.abs(c.file, key))
	}
	if s.sc.hsts != nil {
		t.used[s.sc.hsts] = true
		v := s.sc.hsts.arg(1)
		if t.cfg.hsts != "" && t.cfg.hsts != v {
			t.noteOnce(s.sc.hsts, "%s dropped: [tls] hsts is one value for every host; %q kept", s.sc.hsts.text(), t.cfg.hsts)
		} else {
			t.cfg.hsts = v
		}
	}
	if s.sc.limitConn != nil {
		for _, n := range s.sc.limitConn {
			t.ngxLimitConn(n)
		}
	}
}

func (t *translation) ngxLimitConn(n *node) {
	if t.used[n] {
		return
	}
	t.used[n] = true
	limit, err := strconv.Atoi(n.arg(1))
	key, ok := t.zones[n.arg(0)]
	switch {
	case err != nil || !ok:
		t.dropped(n, "its limit_conn_zone is not found")
	case key == "$binary_remote_addr" || key == "$remote_addr":
		if t.cfg.maxConnsPerIP == 0 || limit < t.cfg.maxConnsPerIP {
			t.cfg.maxConnsPerIP = limit
		}
		t.noteOnce(n, "%s → max_connections_per_ip = %d: wssproxy counts WebSocket connections (nginx: requests in progress), over every route", n.text(), limit)
	case key == "$server_name" || key == "$host":
		if t.cfg.maxConns == 0 || limit < t.cfg.maxConns {
			t.cfg.maxConns = limit
		}
		t.noteOnce(n, "%s → max_connections = %d: wssproxy counts WebSocket connections through the whole proxy", n.text(), limit)
	default:
		t.dropped(n, "wssproxy limits connections per client address or in all, not by "+key)
	}
}

// ngxPlainServer reads a plain-HTTP server: a redirect to https becomes
// [redirect]; anything else cannot be served.
func (t *translation) ngxPlainServer(s *server) {
	if s.redirect != nil {
		if t.cfg.redirect == "" {
			t.cfg.redirect = s.listens[0].addr
		}
		hosts := ""
		if len(s.ifRedirects) > 0 {
			hosts = " for every host, where nginx redirected only the names its if blocks test (and answered others " + strings.Join(returnsOf(s), " ") + ")"
		}
		t.noteOnce(s.redirect, "%s → [redirect] listen = %q: wssproxy answers 308 to https on the same host and path%s", s.redirect.text(), t.cfg.redirect, hosts)
		for _, l := range s.listens[1:] {
			if portOf(l.addr) == portOf(t.cfg.redirect) {
				continue
			}
			t.noteOnce(l.n, "%s dropped: [redirect] is one listener (%s)", l.n.text(), t.cfg.redirect)
		}
		return
	}
	if len(s.locations) > 0 || s.sc.root != nil {
		t.noteOnce(s.n, "server on %s dropped: plain HTTP; wssproxy serves routes over TLS only", s.listens[0].addr)
		return
	}
	for _, d := range s.drops {
		t.dropped(d, "plain HTTP on "+s.listens[0].addr+": wssproxy's only plain listener is [redirect], which redirects to https")
	}
}

func returnsOf(s *server) []string {
	var out []string
	for _, d := range s.drops {
		out = append(out, d.text())
	}
	if len(out) == 0 {
		return []string{"with nginx's default"}
	}
	return out
}

func (t *translation) ngxRealIP(pp *node) {
	h := t.realIPHeader
	switch {
	case h != nil && h.arg(0) == "proxy_protocol":
		t.used[h] = true
		if pp != nil && len(t.cfg.trustedProxies.list) > 0 {
			t.cfg.proxyProtocol, t.cfg.proxyProtocolFrom = true, t.cfg.trustedProxies.list
			t.cfg.trustedProxies = uniq{}
			t.noteOnce(h, "%s → proxy_protocol = true, proxy_protocol_from = set_real_ip_from's addresses", h.text())
			return
		}
	case h != nil:
		if !strings.EqualFold(h.arg(0), "X-Forwarded-For") {
			t.cfg.realIPHeader = h.arg(0)
		}
	}
	if pp != nil {
		if len(t.cfg.trustedProxies.list) > 0 {
			t.cfg.proxyProtocol, t.cfg.proxyProtocolFrom = true, t.cfg.trustedProxies.list
			t.noteOnce(pp, "%s → proxy_protocol = true, proxy_protocol_from = set_real_ip_from's addresses (nginx took PROXY headers from anyone; wssproxy refuses them from others)", pp.text())
		} else {
			t.cfg.proxyProtocolTODO = true
			t.noteOnce(pp, "%s: nginx took PROXY headers from anyone; wssproxy needs proxy_protocol_from, the load balancers that send them: see the commented lines", pp.text())
		}
	}
}
