package importconf

import (
	"slices"
	"strconv"
	"strings"
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
	authRequest  *node   // auth_request (nginx_auth.go)
	authSets     []*node // auth_request_set
}

// scoped are the directives a scope takes; they are reported when a route
// uses them, or at the end as unused.
var scoped = map[string]bool{"proxy_set_header": true, "root": true, "alias": true, "index": true,
	"proxy_read_timeout": true, "proxy_send_timeout": true, "ssl": true, "ssl_certificate": true,
	"ssl_certificate_key": true, "add_header": true, "limit_conn": true,
	"proxy_ssl_trusted_certificate": true, "proxy_ssl_name": true, "auth_request": true, "auth_request_set": true}

func (t *translation) scopeOf(nodes []*node, parent scope) scope {
	s := parent
	var headers, certs, keys, limits, authSets []*node
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
		case "auth_request":
			s.authRequest = n
		case "auth_request_set":
			authSets = append(authSets, n)
		}
	}
	if authSets != nil {
		s.authSets = authSets
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
		if !t.used[n] && len(n.noted) == 0 {
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
			for _, a := range n.args[min(1, len(n.args)):] {
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
		t.cfg.trustedProxies.add(n.args...)
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
			if addr == "" {
				t.dropped(d, "no address")
				continue
			}
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
