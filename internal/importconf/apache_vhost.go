package importconf

// Apache virtual hosts: plain ones, TLS ones with their certificates, and
// their ProxyPass routes.

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

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
	if t.err != nil {
		return
	}
	hosts := []string{""}
	if !def && !v.main {
		var names uniq
		for _, h := range v.hosts {
			name, why := hostName(h)
			if why != "" {
				t.noteOnce(v.nameNode, "%s: %s dropped: %s", v.nameNode.text(), h, why)
				continue
			}
			names.add(name)
		}
		if hosts = names.list; len(hosts) == 0 {
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
	same := map[[2]string]bool{} // path and URL of each ProxyPass whose URL's path is its own
	for _, p := range v.passes {
		if hasRoot = t.apachePass(v, p, hosts) || hasRoot; t.err != nil {
			return
		}
		if u, err := url.Parse(p.url); err == nil && u.Path == p.path {
			same[[2]string{p.path, p.url}] = true
		}
	}
	for _, r := range v.reverse {
		if same[[2]string{r.arg(0), r.arg(1)}] {
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
		t.addRoutes(v.docRoot, &route{from: from, path: "/", static: dir}, hosts, false)
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
		if full, name, ok := t.fullChain(v, cert, chain); ok {
			t.noteOnce(v.chain, "%s: wssproxy takes the full chain in one file: wrote %s (the certificate, then the chain), and tls.cert names it", v.chain.text(), name)
			cert = full
		} else {
			t.noteOnce(v.chain, "%s: wssproxy takes the full chain in one file: cat %s %s > fullchain.pem and set tls.cert to it (import -o FILE writes it when it can read both); until then clients get no intermediate certificate", v.chain.text(), cert, chain)
		}
	}
	t.cfg.addCert(cert, key)
}

// fullChain joins the certificates of cert and of its chain file into
// one file, to be written beside the output. It copies certificates and
// nothing else (httpd lets SSLCertificateFile hold the private key too),
// and a file that holds none fails the import rather than being copied
// (SSLCertificateFile /etc/shadow, run as root). A file it cannot read
// here is left to the note, which says how to join them by hand.
func (t *translation) fullChain(v *vhost, cert, chain string) (string, string, bool) {
	if t.opts.OutDir == "" {
		return "", "", false
	}
	dir, err := filepath.Abs(t.opts.OutDir)
	if err != nil {
		return "", "", false
	}
	if name, ok := t.chains[[2]string{cert, chain}]; ok { // another virtual host's
		return filepath.Join(dir, name), name, true
	}
	var full []byte
	for _, src := range []struct {
		n    *node
		path string
	}{{v.cert, cert}, {v.chain, chain}} {
		data, err := t.read(src.path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return "", "", false
		}
		if err == nil {
			data, err = certificates(src.path, data)
		}
		if err != nil {
			t.fail(src.n, "%s %v", src.n.name, err)
			return "", "", false
		}
		full = append(full, data...)
	}
	if t.chains == nil {
		t.chains, t.outNames = map[[2]string]string{}, map[string]bool{}
	}
	base := strings.TrimSuffix(filepath.Base(cert), filepath.Ext(cert))
	name := base + "-fullchain.pem"
	for i := 2; t.outNames[name]; i++ {
		name = fmt.Sprintf("%s-%d-fullchain.pem", base, i) // certificates of one name in different folders
	}
	t.chains[[2]string{cert, chain}], t.outNames[name] = name, true
	t.files = append(t.files, OutFile{Name: name, Data: full})
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
	if !t.spend(n, len(v.reqHdrs)) {
		return false
	}
	var remove uniq
	for _, h := range v.reqHdrs {
		op, name, val := strings.ToLower(h.arg(0)), h.arg(1), h.arg(2)
		switch {
		case op == "unset":
			remove.add(name)
		case (op == "set" || op == "add") && !strings.Contains(val, "%{") && len(h.args) == 3:
			r.setHeaders = append(r.setHeaders, [2]string{name, val})
			hostSet = hostSet || strings.EqualFold(name, "Host")
		default:
			t.dropped(h, "set_headers takes fixed values, and wssproxy has no variables")
		}
	}
	r.removeHeaders = remove.list
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
	t.addRoutes(n, &r, hosts, true)
	return r.path == "/"
}
