package importconf

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// vhost is httpd's main server or one <VirtualHost>.
type vhost struct {
	n        *node // nil for the main server
	main     bool
	addrs    []string
	hosts    []string
	nameNode *node
	tls      bool
	cert     *node
	key      *node
	chain    *node
	preserve *node // ProxyPreserveHost
	timeout  *node // ProxyWebsocketIdleTimeout, ProxyTimeout or Timeout
	docRoot  *node
	index    *node
	reqHdrs  []*node
	hsts     *node
	passes   []apachePass
	reverse  []*node
	redirect *node
}

type apachePass struct {
	n    *node
	path string
	url  string
	loc  *node // the <Location> it is in, if any
}

var apacheDrops = map[string]string{
	"sslciphersuite":         dropReasons["ssl_ciphers"],
	"sslhonorcipherorder":    dropReasons["ssl_prefer_server_ciphers"],
	"sslsessioncache":        dropReasons["ssl_session_cache"],
	"sslsessioncachetimeout": dropReasons["ssl_session_timeout"],
	"sslsessiontickets":      dropReasons["ssl_session_tickets"],
	"sslcompression":         "TLS compression is never offered",
	"sslusestapling":         "no OCSP stapling",
	"sslstaplingcache":       "no OCSP stapling",
	"sslopensslconfcmd":      "wssproxy's TLS policy has no such setting",
	"sslverifyclient":        dropReasons["ssl_verify_client"],
	"sslcacertificatefile":   dropReasons["ssl_client_certificate"],
	"sslrandomseed":          "Go's crypto/rand needs no seed",
	"sslpassphrasedialog":    "keys must be unencrypted PEM",
	"sslproxyverify":         "wssproxy verifies wss:// and https:// backends (backend_ca for a private CA)",
	"errorlog":               dropReasons["error_log"],
	"customlog":              dropReasons["access_log"],
	"transferlog":            dropReasons["access_log"],
	"logformat":              dropReasons["access_log"],
	"loglevel":               "wssproxy's is log_level",
	"require":                "wssproxy has no access control: the route is open to everyone",
	"allow":                  "wssproxy has no access control: the route is open to everyone",
	"deny":                   "wssproxy has no access control: the route is open to everyone",
	"order":                  "wssproxy has no access control: the route is open to everyone",
	"serveradmin":            "no setting",
	"serverroot":             "httpd's own process settings",
	"pidfile":                "httpd's own process settings (wssproxy's is pid_file)",
	"user":                   "httpd's own process settings",
	"group":                  "httpd's own process settings",
	"mutex":                  "httpd's own process settings",
	"keepalive":              dropReasons["keepalive_timeout"],
	"keepalivetimeout":       dropReasons["keepalive_timeout"],
	"maxkeepaliverequests":   dropReasons["keepalive_timeout"],
	"servertokens":           dropReasons["server_tokens"],
	"serversignature":        dropReasons["server_tokens"],
	"rewriteengine":          dropReasons["rewrite"],
	"rewritecond":            dropReasons["rewrite"],
	"rewriterule":            dropReasons["rewrite"],
	"errordocument":          dropReasons["error_page"],
	"options":                "no setting",
	"allowoverride":          "no .htaccess files",
	"addtype":                dropReasons["types"],
	"addhandler":             "no handlers: static files or backends",
}

// apache translates a parsed httpd configuration.
func (t *translation) apache(nodes []*node) {
	main := &vhost{main: true}
	var vhosts []*vhost
	var listens []*node
	var walk func(nodes []*node, v *vhost, loc *node)
	walk = func(nodes []*node, v *vhost, loc *node) {
		for _, n := range nodes {
			name := strings.ToLower(n.name)
			switch {
			case name == "ifmodule" || name == "ifdefine" || name == "ifversion" || name == "ifdirective":
				walk(n.block, v, loc) // assume the module is there
			case name == "virtualhost" && n.hasBlock && v.main:
				vh := &vhost{n: n, cert: main.cert, key: main.key, chain: main.chain, preserve: main.preserve,
					timeout: main.timeout, hsts: main.hsts, reqHdrs: main.reqHdrs}
				for _, a := range n.args {
					if addr, ok := listenAddr(a, "80"); ok {
						vh.addrs = append(vh.addrs, addr)
					}
				}
				walk(n.block, vh, nil)
				vhosts = append(vhosts, vh)
			case name == "location" && n.hasBlock:
				walk(n.block, v, n)
			case n.hasBlock:
				t.noteOnce(n, "<%s> dropped (and all it holds): no wssproxy equivalent", n.text())
			case name == "listen" && v.main:
				listens = append(listens, n)
			case name == "servername" || name == "serveralias":
				v.hosts, v.nameNode = append(v.hosts, n.args...), n
				if v.main {
					t.noteOnce(n, "%s: routes name no host: httpd's main server answers every host name", n.text())
				}
			case name == "sslengine":
				v.tls = strings.EqualFold(n.arg(0), "on")
				t.builtIn(n, "wssproxy's listener is always TLS")
			case name == "sslcertificatefile":
				v.cert = n
			case name == "sslcertificatekeyfile":
				v.key = n
			case name == "sslcertificatechainfile":
				v.chain = n
			case name == "sslprotocol":
				t.apacheProtocols(n)
			case name == "sslproxyengine":
				t.builtIn(n, "wss:// and https:// backends need no switch")
			case name == "proxyrequests":
				if strings.EqualFold(n.arg(0), "off") {
					t.builtIn(n, "wssproxy is never a forward proxy")
				} else {
					t.dropped(n, "wssproxy is not a forward proxy")
				}
			case name == "proxypreservehost":
				v.preserve = n
			case name == "proxywebsocketidletimeout" || name == "proxytimeout" || name == "timeout":
				if v.timeout == nil || name != "timeout" {
					v.timeout = n
				}
			case name == "documentroot":
				v.docRoot = n
			case name == "directoryindex":
				v.index = n
			case name == "proxypass":
				p := apachePass{n: n, loc: loc}
				if loc != nil {
					p.path, p.url = loc.arg(0), n.arg(0)
				} else {
					p.path, p.url = n.arg(0), n.arg(1)
				}
				v.passes = append(v.passes, p)
			case name == "proxypassreverse":
				v.reverse = append(v.reverse, n)
			case name == "proxypassmatch":
				t.dropped(n, "regular expressions are not translated; write a prefix route (path = \"/…\") for what it matches")
			case name == "header":
				if len(n.args) >= 3 && strings.EqualFold(n.args[len(n.args)-2], "Strict-Transport-Security") {
					v.hsts = n
				} else {
					t.dropped(n, "wssproxy adds no response headers (only [tls] hsts)")
				}
			case name == "requestheader":
				v.reqHdrs = append(v.reqHdrs, n)
			case name == "remoteipheader":
				if !strings.EqualFold(n.arg(0), "X-Forwarded-For") {
					t.cfg.realIPHeader = n.arg(0)
				}
			case name == "remoteiptrustedproxy" || name == "remoteipinternalproxy":
				t.cfg.trustedProxies = addUnique(t.cfg.trustedProxies, n.args...)
			case name == "redirect" || name == "redirectpermanent" || name == "redirectmatch":
				if u := n.args[len(n.args)-1]; strings.HasPrefix(u, "https://") {
					v.redirect = n
				} else {
					t.dropped(n, "wssproxy redirects only plain HTTP to https ([redirect])")
				}
			case name == "rewriterule" && strings.HasPrefix(n.arg(1), "https://") && strings.Contains(n.arg(2), "R"):
				v.redirect = n
			case name == "loadmodule":
				t.dropped(n, "wssproxy has no modules: proxying, WebSockets and TLS are built in")
			default:
				if r, ok := apacheDrops[name]; ok {
					t.dropped(n, r)
				} else {
					t.dropped(n, "no wssproxy equivalent")
				}
			}
		}
	}
	walk(nodes, main, nil)

	main.tls = main.tls || main.cert != nil
	for _, vh := range vhosts {
		vh.tls = vh.tls || (vh.cert != nil && !vh.plainPort())
	}
	// The listener: the first TLS virtual host's port, or Listen's.
	for _, vh := range vhosts {
		if vh.tls && len(vh.addrs) > 0 && t.cfg.listen == "" {
			t.cfg.listen = vh.addrs[0]
		}
	}
	for _, l := range listens {
		addr, ok := listenAddr(l.arg(0), "")
		switch {
		case !ok:
			t.dropped(l, "not a TCP address")
		case t.cfg.listen == "" && (portOf(addr) == "443" || strings.EqualFold(l.arg(1), "https")):
			t.cfg.listen = addr
		case portOf(addr) == portOf(t.cfg.listen):
		default:
			t.noteOnce(l, "%s: plain HTTP, or a second port: wssproxy has one TLS listener (and [redirect] for port 80)", l.text())
		}
	}
	if t.cfg.listen == "" && (main.tls || len(vhosts) > 0) {
		t.cfg.listen = ":443"
		at := firstNode(nodes)
		t.note(at, "no Listen or <VirtualHost> port for TLS: listen = \":443\", the port httpd-ssl.conf serves")
	}
	def := true // the first TLS server takes every host
	if main.tls || len(main.passes) > 0 || main.docRoot != nil {
		t.apacheServer(main, true)
		def = false
	}
	for _, vh := range vhosts {
		if !vh.tls {
			t.apachePlain(vh)
			continue
		}
		t.apacheServer(vh, def)
		def = false
	}
}

func firstNode(nodes []*node) *node {
	if len(nodes) > 0 {
		return nodes[0]
	}
	return &node{}
}

func (v *vhost) plainPort() bool {
	for _, a := range v.addrs {
		if portOf(a) == "80" {
			return true
		}
	}
	return false
}

func (t *translation) apacheProtocols(n *node) {
	all := []string{"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
	var on []string
	for _, a := range n.args {
		name := strings.TrimLeft(a, "+-")
		names := []string{name}
		if strings.EqualFold(name, "all") {
			names = all
		}
		for _, p := range names {
			i := indexFold(on, p)
			switch {
			case strings.HasPrefix(a, "-") && i >= 0:
				on = append(on[:i], on[i+1:]...)
			case !strings.HasPrefix(a, "-") && i < 0:
				on = append(on, p)
			}
		}
	}
	t.tlsProtocolsAs(n, n.text()+":", on)
}

func indexFold(list []string, s string) int {
	for i, x := range list {
		if strings.EqualFold(x, s) {
			return i
		}
	}
	return -1
}

// apachePlain reads a plain-HTTP virtual host: a redirect to https
// becomes [redirect]; routes cannot be served.
func (t *translation) apachePlain(v *vhost) {
	addr := ":80"
	if len(v.addrs) > 0 {
		addr = v.addrs[0]
	}
	if v.redirect != nil {
		if t.cfg.redirect == "" {
			t.cfg.redirect = addr
		}
		t.noteOnce(v.redirect, "%s → [redirect] listen = %q: wssproxy answers 308 to https on the same host and path, for every host", v.redirect.text(), t.cfg.redirect)
		return
	}
	if len(v.passes) > 0 || v.docRoot != nil {
		t.noteOnce(v.n, "<%s> dropped: plain HTTP; wssproxy serves routes over TLS only", v.n.text())
	}
}

// apacheServer makes the routes and certificate of one TLS server.
func (t *translation) apacheServer(v *vhost, def bool) {
	hosts := []string{""}
	if !def && !v.main {
		hosts = nil
		for _, h := range v.hosts {
			name, why := hostName(h)
			if why != "" {
				t.noteOnce(v.nameNode, "%s: %s dropped: %s", v.nameNode.text(), h, why)
				continue
			}
			hosts = addUnique(hosts, name)
		}
		if len(hosts) == 0 {
			t.noteOnce(v.n, "<%s> dropped: it is not the first virtual host and names no host a route can take", v.n.text())
			return
		}
	} else if !v.main && v.nameNode != nil {
		t.noteOnce(v.nameNode, "%s: routes name no host: the first virtual host of its port takes every host name", v.nameNode.text())
	}
	t.apacheCert(v)
	if v.hsts != nil {
		t.cfg.hsts = v.hsts.args[len(v.hsts.args)-1]
	}
	hasRoot := false
	for _, p := range v.passes {
		hasRoot = t.apachePass(v, p, hosts) || hasRoot
	}
	for _, r := range v.reverse {
		same := false
		for _, p := range v.passes {
			if u, err := url.Parse(p.url); err == nil && p.path == r.arg(0) && u.Path == p.path && r.arg(1) == p.url {
				same = true
			}
		}
		if same {
			t.noteOnce(r, "%s: not needed: the backend's paths are the client's, so its redirects need no rewriting", r.text())
		} else {
			t.dropped(r, "wssproxy does not rewrite backends' Location headers: a backend's redirect reaches the client as the backend wrote it")
		}
	}
	if v.docRoot != nil && !hasRoot {
		dir := t.abs(v.docRoot.file, v.docRoot.arg(0))
		from := fmt.Sprintf("%s:%d: %s", v.docRoot.file, v.docRoot.line, v.docRoot.text())
		if v.index != nil && !strings.EqualFold(strings.Join(v.index.args, " "), "index.html") {
			t.noteOnce(v.index, "%s: static routes serve index.html only", v.index.text())
		}
		for _, h := range hosts {
			if t.cfg.hasRoute(h, "/") == nil {
				t.cfg.routes = append(t.cfg.routes, &route{from: from, path: "/", host: h, static: dir})
			}
		}
	} else if v.docRoot != nil {
		t.dropped(v.docRoot, "ProxyPass / sends every path to the backend")
	}
}

func (t *translation) apacheCert(v *vhost) {
	if v.cert == nil {
		return
	}
	cert := t.abs(v.cert.file, v.cert.arg(0))
	key := cert // httpd allows the key inside the certificate file
	if v.key != nil {
		key = t.abs(v.key.file, v.key.arg(0))
	}
	if v.chain != nil {
		chain := t.abs(v.chain.file, v.chain.arg(0))
		if full, name, ok := t.fullChain(cert, chain); ok {
			t.noteOnce(v.chain, "%s: wssproxy takes the full chain in one file: wrote %s (the certificate, then the chain), and tls.cert names it", v.chain.text(), name)
			cert = full
		} else {
			t.noteOnce(v.chain, "%s: wssproxy takes the full chain in one file: cat %s %s > fullchain.pem and set tls.cert to it (import -o FILE writes it when it can read both); until then clients get no intermediate certificate", v.chain.text(), cert, chain)
		}
	}
	t.cfg.addCert(cert, key)
}

// fullChain joins a certificate and its chain file into one, to be
// written beside the output.
func (t *translation) fullChain(cert, chain string) (string, string, bool) {
	if t.opts.OutDir == "" {
		return "", "", false
	}
	c, err1 := os.ReadFile(cert)
	ch, err2 := os.ReadFile(chain)
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	if len(c) > 0 && c[len(c)-1] != '\n' {
		c = append(c, '\n')
	}
	name := strings.TrimSuffix(filepath.Base(cert), filepath.Ext(cert)) + "-fullchain.pem"
	dir, err := filepath.Abs(t.opts.OutDir)
	if err != nil {
		return "", "", false
	}
	t.files = append(t.files, OutFile{Name: name, Data: append(c, ch...)})
	return filepath.Join(dir, name), name, true
}

// apachePass makes the route of one ProxyPass. It reports whether it is "/".
func (t *translation) apachePass(v *vhost, p apachePass, hosts []string) bool {
	n := p.n
	if p.url == "!" {
		t.dropped(n, "wssproxy has no exclusions: the path goes to the next shorter route")
		return false
	}
	target := p.url
	var r route
	r.path = p.path
	at := n
	if p.loc != nil {
		at = p.loc
	}
	r.from = fmt.Sprintf("%s:%d: %s", at.file, at.line, at.text())
	hostHeader := ""
	if sock, rest, ok := strings.Cut(target, "|"); ok && strings.HasPrefix(sock, "unix:") {
		u, _ := url.Parse(rest)
		scheme := "ws"
		if u != nil && (u.Scheme == "https" || u.Scheme == "wss") {
			scheme = "wss"
		}
		r.backend, hostHeader = scheme+"+unix://"+strings.TrimPrefix(sock, "unix:"), "localhost"
	} else {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			t.dropped(n, "not a backend URL")
			return false
		}
		switch u.Scheme {
		case "ws", "http":
			u.Scheme = "ws"
		case "wss", "https":
			u.Scheme = "wss"
			t.noteOnce(n, "%s: wssproxy verifies the backend's certificate (httpd's SSLProxyVerify is none by default); set backend_ca for a private CA", n.text())
		default:
			t.dropped(n, "wssproxy proxies to ws(s) and http(s) backends only")
			return false
		}
		hostHeader = u.Host
		if u.Path != "" {
			if ng, ws := nginxPath(p.path, u.EscapedPath()), ourPath(p.path, u.EscapedPath()); ng != ws {
				t.noteOnce(n, "%s: httpd sent %s to the backend as %s; wssproxy sends %s", n.text(), sample(p.path), ng, ws)
			}
		}
		r.backend = u.String()
	}
	var params []string
	args := n.args[1:]
	if p.loc != nil {
		args = n.args
	}
	if len(args) > 1 {
		params = args[1:]
		t.noteOnce(n, "%s: %s dropped: no wssproxy equivalent for ProxyPass parameters", n.text(), strings.Join(params, " "))
	}
	hostSet := v.preserve != nil && strings.EqualFold(v.preserve.arg(0), "on")
	if v.preserve != nil {
		if hostSet {
			t.builtIn(v.preserve, "the client's Host header is passed on")
		} else {
			t.noteOnce(v.preserve, "%s dropped: wssproxy passes the client's Host header on (set_headers = { Host = … } sends another)", v.preserve.text())
		}
	}
	for _, h := range v.reqHdrs {
		op, name, val := strings.ToLower(h.arg(0)), h.arg(1), h.arg(2)
		switch {
		case op == "unset":
			r.removeHeaders = addUnique(r.removeHeaders, name)
		case (op == "set" || op == "add") && !strings.Contains(val, "%{") && len(h.args) == 3:
			r.setHeaders = append(r.setHeaders, [2]string{name, val})
			hostSet = hostSet || strings.EqualFold(name, "Host")
		default:
			t.dropped(h, "set_headers takes fixed values, and wssproxy has no variables")
		}
	}
	if !hostSet {
		t.noteOnce(n, "%s: the backend gets the client's Host header, where httpd sent %q (ProxyPreserveHost is off by default): set_headers = { Host = %q } keeps httpd's", n.text(), hostHeader, hostHeader)
	}
	if v.timeout != nil {
		secs, err := strconv.Atoi(v.timeout.arg(0))
		d := time.Duration(secs) * time.Second
		switch {
		case err != nil:
			t.dropped(v.timeout, "not a number of seconds")
		case d == time.Minute:
			t.noteOnce(v.timeout, "%s: httpd's default, not reproduced: wssproxy keeps idle tunnels open and pings the client every 30 s to find dead ones", v.timeout.text())
		default:
			r.idleTimeout = goDuration(d)
			which := "longer"
			if d < time.Minute {
				which = "shorter"
			}
			t.noteOnce(v.timeout, "%s → idle_timeout = %q on WebSocket routes, %s than httpd's 60 s default, as set here", v.timeout.text(), r.idleTimeout, which)
		}
	} else {
		t.noteOnce(n, "%s: httpd closed a WebSocket after 60 s without traffic (Timeout's default, mod_proxy_wstunnel); wssproxy keeps idle tunnels open and pings the client every 30 s to find dead ones (idle_timeout sets a limit)", n.text())
	}
	for _, h := range hosts {
		if t.cfg.hasRoute(h, r.path) != nil {
			t.noteOnce(n, "%s dropped: the same path on the same host is a route already", n.text())
			continue
		}
		rr := r
		rr.host = h
		t.cfg.routes = append(t.cfg.routes, &rr)
	}
	return r.path == "/"
}
