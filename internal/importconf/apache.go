package importconf

import (
	"strings"
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
				t.cfg.trustedProxies.add(n.args...)
			case name == "redirect" || name == "redirectpermanent" || name == "redirectmatch":
				if len(n.args) > 0 && strings.HasPrefix(n.args[len(n.args)-1], "https://") {
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
