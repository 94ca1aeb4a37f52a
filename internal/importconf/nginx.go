package importconf

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scope is what a location inherits from the levels around it. nginx
// inherits an array directive (proxy_set_header, ssl_certificate) only
// from the nearest level that has any, and a directive applies to its
// whole block wherever in the block it is written.
type scope struct {
	headers      []*node
	root, alias  *node
	index        *node
	readTimeout  *node
	sendTimeout  *node
	sslOn        *node
	certs, keys  []*node
	hsts         *node
	limitConn    []*node
	proxySSLCA   *node
	proxySSLName *node
}

// scoped are the directives a scope takes; they are reported when a route
// uses them, or at the end as unused.
var scoped = map[string]bool{"proxy_set_header": true, "root": true, "alias": true, "index": true,
	"proxy_read_timeout": true, "proxy_send_timeout": true, "ssl": true, "ssl_certificate": true,
	"ssl_certificate_key": true, "add_header": true, "limit_conn": true,
	"proxy_ssl_trusted_certificate": true, "proxy_ssl_name": true}

func (t *translation) scopeOf(nodes []*node, parent scope) scope {
	s := parent
	var headers, certs, keys, limits []*node
	for _, n := range nodes {
		if !scoped[n.name] {
			continue
		}
		t.scopeNodes = append(t.scopeNodes, n)
		switch n.name {
		case "proxy_set_header":
			headers = append(headers, n)
		case "root":
			s.root, s.alias = n, nil
		case "alias":
			s.alias, s.root = n, nil
		case "index":
			s.index = n
		case "proxy_read_timeout":
			s.readTimeout = n
		case "proxy_send_timeout":
			s.sendTimeout = n
		case "ssl":
			s.sslOn = n
		case "ssl_certificate":
			certs = append(certs, n)
		case "ssl_certificate_key":
			keys = append(keys, n)
		case "add_header":
			if strings.EqualFold(n.arg(0), "Strict-Transport-Security") {
				s.hsts = n
			} else {
				t.used[n] = true
				t.dropped(n, "wssproxy adds no response headers (only [tls] hsts)")
			}
		case "limit_conn":
			limits = append(limits, n)
		case "proxy_ssl_trusted_certificate":
			s.proxySSLCA = n
		case "proxy_ssl_name":
			s.proxySSLName = n
		}
	}
	if headers != nil {
		s.headers = headers
	}
	if certs != nil {
		s.certs, s.keys = certs, keys
	}
	if limits != nil {
		s.limitConn = limits
	}
	return s
}

type upstream struct {
	n        *node
	servers  []string // "ws-less" addresses with " weight=N"
	addrs    []string
	weights  []int
	balance  string
	maxFails *int
	failTO   string
	used     bool
}

type listenDir struct {
	n     *node
	addr  string
	ssl   bool
	pp    bool
	dflt  bool
	plain bool // no ssl
}

type server struct {
	n           *node
	listens     []listenDir
	names       []string
	nameNode    *node
	sc          scope
	redirect    *node   // return 301 https://…
	ifRedirects []*node // certbot's if ($host = …) { return 301 https://…; }
	drops       []*node // other returns
	locations   []*node
	tls         bool
	fallback    bool // plain HTTP, imported onto the TLS listener
}

// nginx translates a parsed nginx configuration.
func (t *translation) nginx(nodes []*node) {
	t.used = map[*node]bool{}
	t.upstreams = map[string]*upstream{}
	t.zones = map[string]string{}
	var servers []*server
	t.ngxLevel(nodes, scope{}, &servers, true)
	t.ngxServers(servers)
	for _, n := range t.scopeNodes {
		if !t.used[n] && !t.noted[noteKey{n, ""}] {
			t.dropped(n, "no imported route uses it")
		}
	}
	for _, u := range t.upstreamList {
		if !u.used {
			t.noteOnce(u.n, "upstream %s dropped: no imported route uses it", u.n.arg(0))
		}
	}
}

// ngxLevel reads the main or http level (a conf.d file is the http
// level without the braces).
func (t *translation) ngxLevel(nodes []*node, parent scope, servers *[]*server, main bool) {
	sc := t.scopeOf(nodes, parent)
	for _, n := range nodes { // upstreams and zones first: servers refer to them
		switch n.name {
		case "upstream":
			t.ngxUpstream(n)
		case "limit_conn_zone":
			for _, a := range n.args[1:] {
				if z, ok := strings.CutPrefix(a, "zone="); ok {
					name, _, _ := strings.Cut(z, ":")
					t.zones[name] = n.arg(0)
				}
			}
			t.used[n] = true
		}
	}
	for _, n := range nodes {
		switch {
		case scoped[n.name] || n.name == "upstream" || n.name == "limit_conn_zone":
		case n.name == "http" && n.hasBlock:
			t.ngxLevel(n.block, sc, servers, false)
		case n.name == "server" && n.hasBlock:
			*servers = append(*servers, t.ngxServer(n, sc))
		case n.name == "location":
			t.dropped(n, "a location outside any server block")
		default:
			t.ngxOther(n)
		}
	}
}

// ngxOther handles a directive that is neither structure nor scope.
func (t *translation) ngxOther(n *node) {
	switch n.name {
	case "set_real_ip_from":
		t.cfg.trustedProxies = addUnique(t.cfg.trustedProxies, n.args...)
		t.realIPFrom = append(t.realIPFrom, n)
		return
	case "real_ip_header":
		t.realIPHeader = n
		return
	case "proxy_connect_timeout":
		if d, ok := nginxDuration(n.arg(0)); ok {
			if t.cfg.dialTimeout != "" && t.cfg.dialTimeout != goDuration(d) {
				t.noteOnce(n, "%s: dial_timeout is one for all routes; %s kept", n.text(), t.cfg.dialTimeout)
				return
			}
			t.cfg.dialTimeout = goDuration(d)
			return
		}
	case "ssl_protocols":
		t.tlsProtocols(n, n.args)
		return
	case "proxy_set_header", "server", "location":
		return
	}
	if r, ok := builtInReasons[n.name]; ok && r != "" {
		t.builtIn(n, r)
		return
	}
	if r, ok := dropReasons[n.name]; ok && r != "" {
		t.dropped(n, r)
		return
	}
	if strings.HasPrefix(n.name, "ssl_") {
		t.dropped(n, "wssproxy's TLS policy has no such setting")
		return
	}
	t.dropped(n, "no wssproxy equivalent")
}

func (t *translation) ngxUpstream(n *node) {
	u := &upstream{n: n}
	t.upstreams[n.arg(0)] = u
	t.upstreamList = append(t.upstreamList, u)
	var fails []int
	var timeouts []string
	for _, d := range n.block {
		switch d.name {
		case "server":
			addr, skip := d.arg(0), ""
			weight, mf, ft := 1, 1, "10s"
			for _, p := range d.args[1:] {
				k, v, _ := strings.Cut(p, "=")
				switch k {
				case "weight":
					weight, _ = strconv.Atoi(v)
				case "max_fails":
					mf, _ = strconv.Atoi(v)
				case "fail_timeout":
					if dd, ok := nginxDuration(v); ok {
						ft = goDuration(dd)
					}
				case "down":
					skip = "marked down"
				case "backup":
					skip = "a backup server: wssproxy has no backups, and as a normal backend it would take traffic"
				default:
					t.noteOnce(d, "%s: parameter %s dropped: no wssproxy equivalent", d.text(), p)
				}
			}
			if skip != "" {
				t.noteOnce(d, "%s dropped: %s", d.text(), skip)
				continue
			}
			u.addrs, u.weights = append(u.addrs, addr), append(u.weights, weight)
			fails, timeouts = append(fails, mf), append(timeouts, ft)
		case "ip_hash":
			u.balance = "ip_hash"
			t.noteOnce(d, "ip_hash → balance = \"ip_hash\": wssproxy hashes the whole client address (nginx: the first three octets of an IPv4 address), and a backend that leaves moves only its own clients")
		case "least_conn":
			u.balance = "least_conn"
		case "hash":
			if a := d.arg(0); a == "$remote_addr" || a == "$binary_remote_addr" {
				u.balance = "ip_hash"
				t.noteOnce(d, "%s → balance = \"ip_hash\"", d.text())
			} else {
				t.dropped(d, "wssproxy hashes only the client address (ip_hash); round robin instead")
			}
		case "keepalive", "keepalive_timeout", "keepalive_requests", "keepalive_time":
			t.dropped(d, "wssproxy keeps idle plain-HTTP connections to backends by itself; tunnels are never pooled")
		default:
			t.dropped(d, "no wssproxy equivalent")
		}
	}
	if len(fails) > 1 { // with one server nginx never marks it down
		if slices.ContainsFunc(fails, func(f int) bool { return f != fails[0] }) ||
			slices.ContainsFunc(timeouts, func(s string) bool { return s != timeouts[0] }) {
			t.noteOnce(n, "upstream %s: servers differ in max_fails or fail_timeout; wssproxy has one of each per route: the first server's (max_fails=%d fail_timeout=%s)", n.arg(0), fails[0], timeouts[0])
		}
		if fails[0] != 1 {
			u.maxFails = &fails[0]
		}
		if timeouts[0] != "10s" {
			u.failTO = timeouts[0]
		}
	}
}

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
					t.noteOnce(d, "%s: http2: built in: pages are offered HTTP/2, and WebSockets ride on it too (RFC 8441; http2_websockets)", d.text())
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
			for _, name := range s.names {
				if name == "_" || name == "" {
					continue
				}
				if strings.HasPrefix(name, ".") {
					hosts = addUnique(hosts, name[1:], "*"+name)
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
				hosts = addUnique(hosts, h)
			}
			if len(hosts) == 0 {
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
		for _, loc := range s.locations {
			hasRoot = t.ngxLocation(loc, s.sc, hosts) || hasRoot
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
		if pp != nil && len(t.cfg.trustedProxies) > 0 {
			t.cfg.proxyProtocol, t.cfg.proxyProtocolFrom = true, t.cfg.trustedProxies
			t.cfg.trustedProxies = nil
			t.noteOnce(h, "%s → proxy_protocol = true, proxy_protocol_from = set_real_ip_from's addresses", h.text())
			return
		}
	case h != nil:
		if !strings.EqualFold(h.arg(0), "X-Forwarded-For") {
			t.cfg.realIPHeader = h.arg(0)
		}
	}
	if pp != nil {
		if len(t.cfg.trustedProxies) > 0 {
			t.cfg.proxyProtocol, t.cfg.proxyProtocolFrom = true, t.cfg.trustedProxies
			t.noteOnce(pp, "%s → proxy_protocol = true, proxy_protocol_from = set_real_ip_from's addresses (nginx took PROXY headers from anyone; wssproxy refuses them from others)", pp.text())
		} else {
			t.cfg.proxyProtocolTODO = true
			t.noteOnce(pp, "%s: nginx took PROXY headers from anyone; wssproxy needs proxy_protocol_from, the load balancers that send them: see the commented lines", pp.text())
		}
	}
}

// ngxLocation makes the routes of one location (and those nested in it).
// It reports whether one of them is "/" (the server's root is then not
// needed).
func (t *translation) ngxLocation(loc *node, parent scope, hosts []string) bool {
	mod, path := "", loc.arg(0)
	switch {
	case len(loc.args) >= 2:
		mod, path = loc.args[0], loc.args[1]
	case strings.HasPrefix(path, "="):
		mod, path = "=", path[1:]
	case strings.HasPrefix(path, "^~"):
		mod, path = "^~", path[2:]
	case strings.HasPrefix(path, "~"):
		mod = "~"
	case strings.HasPrefix(path, "@"):
		t.noteOnce(loc, "location %s dropped: named locations serve try_files and error_page, which are not translated", path)
		return false
	}
	if mod == "~" || mod == "~*" {
		t.noteOnce(loc, "%s dropped: regular expression locations are not translated; write a prefix route (path = \"/…\") for what it matches", loc.text())
		return false
	}
	sc := t.scopeOf(loc.block, parent)
	var pass *node
	var nested []*node
	for _, d := range loc.block {
		switch {
		case scoped[d.name]:
		case d.name == "location" && d.hasBlock:
			nested = append(nested, d)
		case d.name == "proxy_pass":
			pass = d
		case d.name == "return":
			t.dropped(d, "routes do not answer by themselves; for plain HTTP on port 80, [redirect] redirects to https")
			pass = d // a handler: not static
		case d.name == "try_files":
			why := "static routes serve the file or index.html, or 404"
			if slices.ContainsFunc(d.args, func(a string) bool { return !strings.HasPrefix(a, "$uri") && !strings.HasPrefix(a, "=") }) {
				why = "no fallback file: a missing file is 404"
			}
			t.dropped(d, why)
		default:
			t.ngxOther(d)
		}
	}
	rpath := path
	if mod == "=" {
		rpath = "= " + path
	}
	from := fmt.Sprintf("%s:%d: %s", loc.file, loc.line, loc.text())
	isRoot := false
	switch {
	case pass != nil && pass.name == "proxy_pass":
		t.ngxProxy(loc, pass, sc, mod, path, rpath, hosts, from)
		isRoot = path == "/"
	case pass == nil && (sc.root != nil || sc.alias != nil):
		t.ngxStatic(loc, sc, rpath, mod == "=", hosts, from)
		isRoot = path == "/"
	case pass == nil && len(nested) == 0:
		t.noteOnce(loc, "%s dropped: no proxy_pass and no root (nginx would serve its built-in html folder)", loc.text())
	}
	for _, n := range nested {
		isRoot = t.ngxLocation(n, sc, hosts) || isRoot
	}
	return isRoot
}

func (t *translation) ngxStatic(at *node, sc scope, rpath string, exact bool, hosts []string, from string) {
	dir, strip := "", false
	switch {
	case sc.alias != nil:
		t.used[sc.alias] = true
		dir, strip = sc.alias.arg(0), true
	case sc.root != nil:
		t.used[sc.root] = true
		dir = sc.root.arg(0)
	}
	if strings.Contains(dir, "$") {
		t.dropped(at, "a root or alias with variables is not translated")
		return
	}
	if sc.index != nil {
		t.used[sc.index] = true
		var other []string
		for _, a := range sc.index.args {
			if a != "index.html" {
				other = append(other, a)
			}
		}
		if len(other) > 0 {
			t.noteOnce(sc.index, "%s: %s dropped: static routes serve index.html only", sc.index.text(), strings.Join(other, " "))
		}
	}
	dir = t.abs(at.file, dir)
	if strip && exact {
		strip = false
	}
	for _, h := range hosts {
		if t.cfg.hasRoute(h, rpath) != nil {
			t.noteOnce(at, "%s dropped: the same path on the same host is a route already", at.text())
			continue
		}
		t.cfg.routes = append(t.cfg.routes, &route{from: from, path: rpath, host: h, static: dir, stripPrefix: strip})
	}
}

// ngxProxy makes a route from proxy_pass.
func (t *translation) ngxProxy(loc, pass *node, sc scope, mod, path, rpath string, hosts []string, from string) {
	target := pass.arg(0)
	if strings.Contains(target, "$") {
		t.noteOnce(pass, "%s dropped: a proxy_pass with variables is not translated; write backend = \"ws://host:port\" by hand", pass.text())
		return
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.noteOnce(pass, "%s dropped: wssproxy proxies to http(s) and ws(s) backends only", pass.text())
		return
	}
	scheme := "ws"
	if u.Scheme == "https" {
		scheme = "wss"
	}
	r := &route{from: from, path: rpath}
	uri := u.EscapedPath()
	hostHeader := u.Host
	if strings.HasPrefix(u.Host, "unix:") { // http://unix:/run/app.sock:/uri
		sock, rest, _ := strings.Cut(strings.TrimPrefix(target, u.Scheme+"://unix:"), ":")
		r.backend = scheme + "+unix://" + sock
		hostHeader = "localhost"
		if rest != "" && rest != "/" {
			t.noteOnce(pass, "%s: the URI part %s dropped: a unix-socket backend keeps the request path", pass.text(), rest)
		}
		uri = ""
	} else if up, ok := t.upstreams[u.Host]; ok {
		up.used = true
		var entries []string
		for i, a := range up.addrs {
			e := backendURL(scheme, a, uri)
			if up.weights[i] > 1 && len(up.addrs) > 1 {
				e += " weight=" + strconv.Itoa(up.weights[i])
			}
			entries = append(entries, e)
		}
		switch {
		case len(entries) == 0:
			t.noteOnce(pass, "%s dropped: upstream %s has no server left", pass.text(), u.Host)
			return
		case len(entries) == 1:
			r.backend = entries[0]
		default:
			r.backends, r.balance, r.maxFails, r.failTimeout = entries, up.balance, up.maxFails, up.failTO
		}
	} else {
		r.backend = backendURL(scheme, u.Host, uri)
	}
	if u.Scheme == "https" {
		t.noteOnce(pass, "%s: wssproxy verifies the backend's certificate (nginx does not, by default: proxy_ssl_verify off); set backend_ca for a private CA", pass.text())
	}
	if sc.proxySSLCA != nil {
		t.used[sc.proxySSLCA] = true
		r.backendCA = t.abs(sc.proxySSLCA.file, sc.proxySSLCA.arg(0))
	}
	if sc.proxySSLName != nil && !strings.Contains(sc.proxySSLName.arg(0), "$") {
		t.used[sc.proxySSLName] = true
		r.backendName = sc.proxySSLName.arg(0)
	}
	if uri != "" && mod != "=" {
		if ng, ws := nginxPath(path, uri), ourPath(path, uri); ng != ws {
			t.noteOnce(pass, "%s: nginx sent %s to the backend as %s; wssproxy sends %s", pass.text(), sample(path), ng, ws)
		}
	}
	hostSet := t.ngxHeaders(sc, r)
	if !hostSet {
		t.noteOnce(pass, "%s: the backend gets the client's Host header, where nginx sent %q (proxy_pass's host): set_headers = { Host = %q } keeps nginx's", pass.text(), hostHeader, hostHeader)
	}
	t.ngxTimeouts(pass, sc, r)
	for _, n := range sc.limitConn {
		t.ngxLimitConn(n)
	}
	for _, h := range hosts {
		if t.cfg.hasRoute(h, rpath) != nil {
			t.noteOnce(loc, "%s dropped: the same path on the same host is a route already", loc.text())
			continue
		}
		rr := *r
		rr.host = h
		t.cfg.routes = append(t.cfg.routes, &rr)
	}
}

func backendURL(scheme, addr, uri string) string {
	if s, ok := strings.CutPrefix(addr, "unix:"); ok {
		return scheme + "+unix://" + s
	}
	return scheme + "://" + addr + uri
}

func sample(p string) string {
	if strings.HasSuffix(p, "/") {
		return p + "x"
	}
	return p + "/x"
}

// nginxPath is where nginx sends sample(prefix) with a proxy_pass URI:
// the matched prefix replaced by the URI, as strings.
func nginxPath(prefix, uri string) string {
	return uri + strings.TrimPrefix(sample(prefix), prefix)
}

// ourPath is where wssproxy sends it (proxy/route.go's targetPath).
func ourPath(prefix, base string) string {
	rest := strings.TrimPrefix(sample(prefix), prefix)
	if rest != "" && rest[0] != '/' && strings.HasSuffix(prefix, "/") {
		rest = "/" + rest
	}
	if strings.HasSuffix(base, "/") && strings.HasPrefix(rest, "/") {
		base = base[:len(base)-1]
	}
	if out := base + rest; out != "" {
		return out
	}
	return "/"
}

// ngxHeaders translates the effective proxy_set_header lines. It reports
// whether Host is set.
func (t *translation) ngxHeaders(sc scope, r *route) bool {
	hostSet := false
	for _, h := range sc.headers {
		t.used[h] = true
		name, v := h.arg(0), h.arg(1)
		lname := strings.ToLower(name)
		lv := strings.ToLower(v)
		switch {
		case lname == "upgrade" && lv == "$http_upgrade":
			t.builtIn(h, "the WebSocket upgrade is always forwarded")
		case lname == "connection" && (lv == "upgrade" || lv == "$connection_upgrade" || lv == "keep-alive" || lv == "close" || lv == ""):
			t.builtIn(h, "wssproxy manages Connection (upgrade for WebSockets)")
		case lname == "x-real-ip" && (lv == "$remote_addr" || lv == "$proxy_protocol_addr" || lv == "$realip_remote_addr"):
			t.builtIn(h, "X-Real-IP is the client's address, with X-Forwarded-For, -Proto and -Host")
		case lname == "x-forwarded-for" && (lv == "$proxy_add_x_forwarded_for" || lv == "$remote_addr"):
			t.builtIn(h, "X-Forwarded-For is appended to behind trusted_proxies and set from the client otherwise")
		case lname == "x-forwarded-proto" && (lv == "$scheme" || lv == "https"):
			t.builtIn(h, "X-Forwarded-Proto is https")
		case lname == "x-forwarded-host" && (lv == "$host" || lv == "$http_host"):
			t.builtIn(h, "X-Forwarded-Host is the client's Host")
		case lname == "host" && (lv == "$host" || lv == "$http_host"):
			t.builtIn(h, "the client's Host header is passed on")
			hostSet = true
		case v == "":
			r.removeHeaders = addUnique(r.removeHeaders, name)
		case lname == "host" && lv == "$proxy_host":
			hostSet = true
			if b := r.backend; b != "" {
				if bu, err := url.Parse(b); err == nil && bu.Host != "" {
					r.setHeaders = append(r.setHeaders, [2]string{"Host", bu.Host})
					continue
				}
			}
			t.dropped(h, "$proxy_host of several backends has no one value")
		case strings.Contains(v, "$"):
			t.dropped(h, "set_headers takes fixed values, and wssproxy has no variables")
		default:
			if lname == "host" {
				hostSet = true
			}
			r.setHeaders = append(r.setHeaders, [2]string{name, v})
		}
	}
	return hostSet
}

// nginxReadTimeout is proxy_read_timeout's default: the time nginx lets a
// WebSocket go without a message from the backend.
const nginxReadTimeout = 60 * time.Second

func (t *translation) ngxTimeouts(pass *node, sc scope, r *route) {
	if n := sc.readTimeout; n != nil {
		t.used[n] = true
		d, ok := nginxDuration(n.arg(0))
		switch {
		case !ok:
			t.dropped(n, "not a time")
		case d == nginxReadTimeout:
			t.noteOnce(n, "%s: nginx's default, not reproduced: wssproxy keeps idle tunnels open and pings the client every 30 s to find dead ones", n.text())
		default:
			r.idleTimeout = goDuration(d)
			which := "longer"
			if d < nginxReadTimeout {
				which = "shorter"
			}
			t.noteOnce(n, "%s → idle_timeout = %q, %s than nginx's 60 s default, as set here; nginx counted only the backend's silence, idle_timeout counts messages either way", n.text(), r.idleTimeout, which)
		}
	} else {
		t.noteOnce(pass, "%s: nginx closed a WebSocket after 60 s without a message from the backend (proxy_read_timeout's default); wssproxy keeps idle tunnels open and pings the client every 30 s to find dead ones (idle_timeout sets a limit)", pass.text())
	}
	if n := sc.sendTimeout; n != nil {
		t.used[n] = true
		if d, ok := nginxDuration(n.arg(0)); ok && d != 60*time.Second {
			r.sendTimeout = goDuration(d)
		} else {
			t.builtIn(n, "send_timeout's default is the same 60 s")
		}
	}
}
