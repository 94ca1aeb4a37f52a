package proxy

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// TestRouterMatch guards prefix matching at segment boundaries, exact
// routes, host and wildcard routes, and longest-match precedence.
func TestRouterMatch(t *testing.T) {
	t.Parallel()
	routes := []Route{
		{Path: "/wss", Backend: "ws://a:1"},                              // 1
		{Path: "= /wss", Backend: "ws://a:2"},                            // 2
		{Path: "/wss/room", Backend: "ws://a:3"},                         // 3
		{Path: "/", Backend: "ws://a:4"},                                 // 4
		{Path: "/api/", Backend: "ws://a:5"},                             // 5
		{Path: "/wss", Host: "chat.example.com", Backend: "ws://a:6"},    // 6
		{Path: "/wss", Host: "*.example.com", Backend: "ws://a:7"},       // 7
		{Path: "/exact", Exact: true, Backend: "ws://a:8"},               // 8
		{Path: "/wss", Host: "*.games.example.com", Backend: "ws://a:9"}, // 9
	}
	var rr router
	for i, r := range routes {
		rr.routes = append(rr.routes, testRoute(t, i, r))
	}
	for _, tc := range []struct {
		host, path string
		want       int // route number, 0 for none
	}{
		{"h", "/wss", 2},
		{"h", "/wss/", 1},
		{"h", "/wss/x", 1},
		{"h", "/wssx", 4},
		{"h", "/wss/room", 3},
		{"h", "/wss/room/1", 3},
		{"h", "/wss/roomy", 1},
		{"h", "/api", 4},
		{"h", "/api/x", 5},
		{"h", "/exact", 8},
		{"h", "/exact/x", 4},
		{"chat.example.com", "/wss/x", 6},
		{"chat.example.com", "/other", 4},
		{"a.example.com", "/wss", 7},
		{"x.games.example.com", "/wss", 9},
		{"a.b.example.com", "/wss/x", 1},
		{"example.com", "/wss/x", 1},
	} {
		got := rr.match(tc.host, tc.path)
		gotN := 0
		for i, rt := range rr.routes {
			if rt == got {
				gotN = i + 1
			}
		}
		if gotN != tc.want {
			t.Errorf("%s%s: route %d, want %d", tc.host, tc.path, gotN, tc.want)
		}
	}
	if (&router{routes: rr.routes[:1]}).match("h", "/other") != nil {
		t.Error("no route should match /other")
	}
}

// TestTargetPath guards the path a backend receives.
func TestTargetPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		route      Route
		path, want string
	}{
		{Route{Path: "/wss", Backend: "ws://b:1"}, "/wss/x", "/wss/x"},
		{Route{Path: "/wss", Backend: "ws://b:1", StripPrefix: true}, "/wss", "/"},
		{Route{Path: "/wss", Backend: "ws://b:1", StripPrefix: true}, "/wss/x", "/x"},
		{Route{Path: "/wss/", Backend: "ws://b:1", StripPrefix: true}, "/wss/x", "/x"},
		{Route{Path: "/wss", Backend: "ws://b:1/"}, "/wss", "/"},
		{Route{Path: "/wss", Backend: "ws://b:1/"}, "/wss/x", "/x"},
		{Route{Path: "/wss/", Backend: "ws://b:1/"}, "/wss/x", "/x"},
		{Route{Path: "/wss", Backend: "ws://b:1/app"}, "/wss/x", "/app/x"},
		{Route{Path: "/wss/", Backend: "ws://b:1/app/"}, "/wss/x", "/app/x"},
		{Route{Path: "/", Backend: "ws://b:1/app/"}, "/x", "/app/x"},
		{Route{Path: "= /wss", Backend: "ws://b:1/socket"}, "/wss", "/socket"},
	} {
		if got := testRoute(t, 0, tc.route).targetPath(tc.path); got != tc.want {
			t.Errorf("%+v %s: got %q, want %q", tc.route, tc.path, got, tc.want)
		}
	}
}

// testRoute compiles r as route i, which must compile.
func testRoute(t *testing.T, i int, r Route) *route {
	t.Helper()
	p, errs := compileRoute(fmt.Sprintf("route[%d]", i+1), i, &r, &r)
	if len(errs) > 0 || p == nil {
		t.Fatalf("route %+v: %v", r, errs)
	}
	return &p.route
}

// TestCleanPath guards dot-segment and slash normalisation.
func TestCleanPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "/", "/": "/", "/wss": "/wss", "/wss/": "/wss/", "//wss//a": "/wss/a",
		"/wss/../admin": "/admin", "/../../etc": "/etc", "/a/./b/": "/a/b/", "wss": "/wss",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCompile guards that Compile, the only validator, reports every bad
// value, each as a *FieldError naming its key, and compiles a good Config.
func TestCompile(t *testing.T) {
	t.Parallel()
	cfg := Config{
		DialTimeout:          -1,
		MaxClientConnections: -1,
		Routes: []Route{
			{Path: "/ok", Backend: "ws://127.0.0.1:8282"},
			{Path: "wss", Backend: "htp://x:1"},
			{Path: "/a", Host: "x.com:443", Backend: "ws://h:1", Static: "/tmp"},
			{Path: "/b"},
			{Path: "/ok", Backend: "ws://127.0.0.1:8283"},
			{Path: "/c", Backend: "ws://h:1/app", StripPrefix: true, SetHeaders: map[string]string{"Bad Name": "v", "Connection": "x"}},
			{Path: "/d", Backend: "ws://h:1", HandshakeTimeout: 10},
		},
	}
	c, err := Compile(cfg)
	if err == nil || c != nil {
		t.Fatalf("compiled: %v", err)
	}
	for _, e := range fielderr.Flatten(err) {
		if fe, ok := e.(*FieldError); !ok || fe.Key == "" {
			t.Errorf("%v (%T): not a FieldError naming its key", e, e)
		}
	}
	for _, want := range []string{
		"dial_timeout: must not be negative",
		"max_client_connections: must not be negative",
		"route[2].path: must start with /",
		`route[2].backend: scheme must be ws, wss, http or https, got "htp"`,
		"route[3].host: must be a host name",
		"route[3].backend: a route has one of backend, backends and static",
		"route[4].backend: missing",
		"route[5].path: \"/ok\" on host \"\" is already route[1]",
		"route[6].strip_prefix: has no effect",
		`route[6].set_headers: invalid header name "Bad Name"`,
		`route[6].set_headers: "Connection" is a hop-by-hop header`,
		`route[7].handshake_timeout: 10ns is too short`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if c, err := Compile(Config{Routes: []Route{{Path: "/", Backend: "ws://[::1]:8282"}}}); err != nil || len(c.routes) != 1 {
		t.Errorf("valid config: %v", err)
	}
}

// FuzzCheckHandshake guards that handshake validation never panics and
// accepts only what RFC 6455 §4.2.1 allows.
func FuzzCheckHandshake(f *testing.F) {
	f.Add("GET", "HTTP/1.1", "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ==", "13")
	f.Add("GET", "HTTP/1.0", "websocket", "upgrade", "dGhlIHNhbXBsZSBub25jZQ==", "13")
	f.Add("POST", "HTTP/1.1", "WebSocket", "keep-alive, Upgrade", "short", "8")
	f.Add("GET", "HTTP/2.0", "websocket, h2c", "Upgrade,,", "", "")
	f.Add("GET", "HTTP/1.1", "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ=", "13 ")
	f.Fuzz(func(t *testing.T, method, proto, upgrade, connection, key, version string) {
		r := &http.Request{Method: method, Proto: proto, Header: http.Header{
			"Upgrade": {upgrade}, "Connection": {connection},
			"Sec-Websocket-Key": {key}, "Sec-Websocket-Version": {version},
		}}
		r.ProtoMajor, r.ProtoMinor, _ = http.ParseHTTPVersion(proto)
		if isWebSocket(r) && !strings.Contains(strings.ToLower(upgrade), "websocket") {
			t.Errorf("isWebSocket true for Upgrade %q", upgrade)
		}
		err := checkHandshake(r)
		if err != nil {
			if err.status != http.StatusBadRequest && err.status != http.StatusUpgradeRequired {
				t.Errorf("status %d", err.status)
			}
			return
		}
		k, decErr := base64.StdEncoding.DecodeString(key)
		if method != "GET" || r.ProtoMajor != 1 || r.ProtoMinor < 1 || decErr != nil || len(k) != 16 || version != "13" ||
			!strings.Contains(strings.ToLower(connection), "upgrade") {
			t.Errorf("accepted %q %q %q %q %q", method, proto, connection, key, version)
		}
	})
}

// FuzzOrigin guards origin matching: no input panics it, and nothing but an
// exact or subdomain match of an allowed origin is accepted.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{"https://example.com", "https://a.example.com", "https://example.com.evil", "null", "https://*.example.com", "", "https://", "//x"} {
		f.Add(s)
	}
	patterns := []originPattern{}
	for _, p := range []string{"https://example.com", "https://*.example.com"} {
		op, _ := parseOrigin(p)
		patterns = append(patterns, op)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		if !originAllowed(patterns, origin) {
			return
		}
		o, err := parseOrigin(origin)
		if err != nil || o.scheme != "https" || o.port != "443" || (o.host != "example.com" && !strings.HasSuffix(o.host, ".example.com")) {
			t.Errorf("allowed %q", origin)
		}
	})
}
