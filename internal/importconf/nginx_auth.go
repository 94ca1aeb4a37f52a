package importconf

// nginx's auth_request: the location it names (location = /auth {
// proxy_pass …; }) becomes the forward_auth URL of the routes that use
// it, never a route of its own, and the auth_request_set variables that
// proxy_set_header passes on become forward_auth_headers.

import (
	"net/http"
	"net/url"
	"strings"
)

// ngxAuthLocations finds the locations that server s's auth_request
// directives (and one inherited from http) name, and what each sends the
// auth subrequest to. They are kept in t.authURLs (by path) and
// t.authLocs for the server's locations that follow.
func (t *translation) ngxAuthLocations(s *server) {
	t.authURLs, t.authLocs = map[string]string{}, map[*node]bool{}
	targets := map[string]bool{}
	if a := s.sc.authRequest; a != nil && a.arg(0) != "off" {
		targets[a.arg(0)] = true
	}
	var walk func(nodes []*node)
	walk = func(nodes []*node) {
		for _, n := range nodes {
			if n.name == "auth_request" && n.arg(0) != "off" {
				targets[n.arg(0)] = true
			}
			if n.hasBlock {
				walk(n.block)
			}
		}
	}
	walk(s.n.block)
	var locs func(nodes []*node)
	locs = func(nodes []*node) {
		for _, loc := range nodes {
			if loc.name != "location" || !loc.hasBlock {
				continue
			}
			path := loc.arg(len(loc.args) - 1)
			path = strings.TrimPrefix(strings.TrimPrefix(path, "="), "^~")
			if targets[path] {
				t.authLocs[loc] = true
				for _, d := range loc.block {
					if d.name == "proxy_pass" {
						t.authURLs[path] = t.authTarget(d, path)
					}
				}
				continue
			}
			locs(loc.block)
		}
	}
	locs(s.locations)
}

// authTarget is where nginx sends an auth subrequest for path through
// proxy_pass d, as a forward_auth URL; "" when it cannot be said.
func (t *translation) authTarget(d *node, path string) string {
	target := d.arg(0)
	if strings.Contains(target, "$") {
		t.noteOnce(d, "%s: a proxy_pass with variables is not translated; write forward_auth by hand", d.text())
		return ""
	}
	if rest, ok := strings.CutPrefix(target, "http://unix:"); ok { // nginx's form is wssproxy's
		if _, uri, _ := strings.Cut(rest, ":"); uri == "" {
			target = strings.TrimSuffix(target, ":") + ":" + path
		}
		return target
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.noteOnce(d, "%s: not an http(s) auth service", d.text())
		return ""
	}
	if up, ok := t.upstreams[u.Host]; ok && len(up.addrs) > 0 {
		up.used = true
		if len(up.addrs) > 1 {
			t.noteOnce(d, "%s: forward_auth asks one address, %s (upstream %s has %d)", d.text(), up.addrs[0], u.Host, len(up.addrs))
		}
		u.Host = up.addrs[0]
	}
	if u.Path == "" {
		u.Path = path // proxy_pass without a URI sends the subrequest's
	}
	return u.String()
}

// ngxAuth gives route r the forward_auth of its scope's auth_request.
func (t *translation) ngxAuth(loc *node, sc scope, r *route) {
	a := sc.authRequest
	if a == nil {
		return
	}
	t.used[a] = true
	if a.arg(0) == "off" {
		return
	}
	u := t.authURLs[a.arg(0)]
	if u == "" {
		t.noteOnce(a, "%s: no location %s with a proxy_pass in this server: the route is left OPEN; write forward_auth = \"http://…\" by hand", a.text(), a.arg(0))
		return
	}
	r.forwardAuth = u
	t.noteOnce(a, "%s → forward_auth = %q: the auth service gets the client's headers and X-Forwarded-Method, -Uri, -Host, -Proto and X-Real-IP (proxy_set_header lines of the auth location are not translated); redirects are the client's", a.text(), u)
}

// authHeader translates proxy_set_header NAME $var when an
// auth_request_set of the scope set $var from the auth service's answer
// ($upstream_http_x_user): the header becomes one of forward_auth_headers.
// It reports whether h was such a line.
func (t *translation) authHeader(h *node, sc scope, r *route) bool {
	v := h.arg(1)
	for _, set := range sc.authSets {
		if set.arg(0) != v {
			continue
		}
		t.used[set] = true
		from, ok := strings.CutPrefix(strings.ToLower(set.arg(1)), "$upstream_http_")
		if !ok || r.forwardAuth == "" {
			t.dropped(h, "only an auth service's response header ($upstream_http_…) of a translated auth_request can be passed on")
			return true
		}
		name := http.CanonicalHeaderKey(strings.ReplaceAll(from, "_", "-"))
		r.forwardAuthHeaders = append(r.forwardAuthHeaders, name)
		if !strings.EqualFold(name, h.arg(0)) {
			t.noteOnce(h, "%s: the backend gets the auth service's %s under its own name, not as %s (a client's own %s is removed: remove_headers)", h.text(), name, h.arg(0), h.arg(0))
		}
		return true
	}
	return false
}
