package importconf

// nginx locations: routes, static files, proxy_pass, headers and timeouts.

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ngxLocation makes the routes of one location (and those nested in it).
// It reports whether one of them is "/" (the server's root is then not
// needed).
func (t *translation) ngxLocation(loc *node, parent scope, hosts []string) bool {
	if t.err != nil {
		return false
	}
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
	if t.authLocs[loc] {
		t.noteOnce(loc, "%s: the auth service of auth_request (forward_auth), not a route", loc.text())
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
	r := &route{from: from, path: rpath, static: dir, stripPrefix: strip}
	t.ngxAuth(at, sc, r)
	t.addRoutes(at, r, hosts, true)
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
	if !t.spend(loc, len(sc.headers)+len(sc.limitConn)) {
		return
	}
	t.ngxAuth(loc, sc, r)
	hostSet := t.ngxHeaders(sc, r)
	if !hostSet {
		t.noteOnce(pass, "%s: the backend gets the client's Host header, where nginx sent %q (proxy_pass's host): set_headers = { Host = %q } keeps nginx's", pass.text(), hostHeader, hostHeader)
	}
	t.ngxTimeouts(pass, sc, r)
	for _, n := range sc.limitConn {
		t.ngxLimitConn(n)
	}
	t.addRoutes(loc, r, hosts, true)
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
	var remove uniq
	defer func() { r.removeHeaders = remove.list }()
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
			remove.add(name)
		case lname == "host" && lv == "$proxy_host":
			hostSet = true
			if b := r.backend; b != "" {
				if bu, err := url.Parse(b); err == nil && bu.Host != "" {
					r.setHeaders = append(r.setHeaders, [2]string{"Host", bu.Host})
					continue
				}
			}
			t.dropped(h, "$proxy_host of several backends has no one value")
		case strings.Contains(v, "$") && t.authHeader(h, sc, r):
			// nginx wrote this header itself: when forward_auth_headers does
			// not set it under this name, a client's own must not take its
			// place at the backend.
			if !slices.ContainsFunc(r.forwardAuthHeaders, func(f string) bool { return strings.EqualFold(f, name) }) {
				remove.add(name)
			}
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
