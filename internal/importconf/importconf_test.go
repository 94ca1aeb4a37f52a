package importconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSyntaxErrors guards that input that is not nginx or httpd syntax is
// refused with the file and the line to look at, never half translated.
func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"unclosed block", "server {\n  listen 443 ssl;\n", `c.conf:1: unbalanced braces: "server {" is never closed (the file ends at line 2)`},
		{"extra brace", "server {\n  listen 443 ssl;\n}\n}\n", `c.conf:4: unbalanced braces: this "}" closes no block`},
		{"missing semicolon", "server {\n  listen 443 ssl\n}\n", `c.conf:2: missing ";" after "listen 443 ssl" (before the "}" on line 3)`},
		{"missing semicolon at the end", "worker_processes 1;\nuser nginx\n", `c.conf:2: missing ";" after "user nginx" (the file ends at line 2)`},
		{"unterminated quote", "server {\n  add_header X \"a;\n}\n", `c.conf:2: unterminated " string`},
		{"misplaced close", "server {\n  location /a {\n    proxy_pass http://a;\n\n  location /b {\n    proxy_pass http://b;\n  }\n}\n",
			`c.conf:1: unbalanced braces: "server {" is never closed (the file ends at line 8); the "}" on line 8 closes "location /a {" (line 2) but lines up with "server {" (line 1): is a "}" missing before it?`},
		{"apache unclosed", "<VirtualHost *:443>\n  ServerName a.example.com\n", "c.conf:1: <VirtualHost> is never closed"},
		{"apache mismatched", "<VirtualHost *:443>\n<Location /wss>\n</VirtualHost>\n", "c.conf:3: </VirtualHost> does not close <Location> opened on line 2"},
		{"neither", "hello world\n", "cannot tell whether this is nginx or Apache httpd configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			write(t, ".", "c.conf", tc.conf)
			_, err := Import("c.conf", Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestIncludes guards include handling: globs relative to the imported
// file's folder (nginx's configuration folder), then the including file's;
// messages name the included file and its line; a file including itself
// is an error, not a hang.
func TestIncludes(t *testing.T) {
	t.Chdir(t.TempDir())
	write(t, ".", "nginx.conf", "http {\n  include conf.d/*.conf;\n}\n")
	write(t, ".", "conf.d/a.conf", "server {\n  listen 443 ssl;\n  location /a { include snippets/ws.conf; proxy_pass http://127.0.0.1:1; }\n}\n")
	write(t, ".", "conf.d/b.conf", "gzip on;\n")
	write(t, ".", "snippets/ws.conf", "\n\nproxy_set_header Upgrade $http_upgrade;\n")
	res, err := Import("nginx.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, n := range res.Notes {
		notes = append(notes, n.String())
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{"conf.d/b.conf:1: gzip on dropped", "snippets/ws.conf:3: proxy_set_header Upgrade $http_upgrade: built in"} {
		if !strings.Contains(all, filepath.FromSlash(want)) {
			t.Errorf("notes lack %q:\n%s", want, all)
		}
	}
	if !strings.Contains(string(res.TOML), `path = "/a"`) {
		t.Errorf("route from the included file missing:\n%s", res.TOML)
	}
	write(t, ".", "loop.conf", "include loop.conf;\n")
	if _, err := Import("loop.conf", Options{}); err == nil || !strings.Contains(err.Error(), "included from itself") {
		t.Errorf("loop: %v", err)
	}
}

// TestTranslations guards mappings the golden cases do not show: each
// configuration gives these TOML lines and these notes.
func TestTranslations(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		toml       []string
		notes      []string
	}{
		{"proxy_protocol from the real_ip addresses", "server {\n listen 443 ssl proxy_protocol;\n set_real_ip_from 10.0.0.0/8;\n real_ip_header proxy_protocol;\n location / { proxy_pass http://127.0.0.1:1; proxy_set_header X-Real-IP $proxy_protocol_addr; }\n}\n",
			[]string{"proxy_protocol = true", `proxy_protocol_from = ["10.0.0.0/8"]`}, []string{"real_ip_header proxy_protocol → proxy_protocol = true"}},
		{"proxy_protocol from anyone", "server {\n listen 443 ssl proxy_protocol;\n location / { proxy_pass http://127.0.0.1:1; }\n}\n",
			[]string{"# proxy_protocol = true"}, []string{"nginx took PROXY headers from anyone"}},
		{"double slash", "server {\n listen 443 ssl;\n location /wss { proxy_pass http://127.0.0.1:1/; }\n}\n",
			[]string{`backend = "ws://127.0.0.1:1/"`}, []string{"nginx sent /wss/x to the backend as //x; wssproxy sends /x"}},
		{"alias", "server {\n listen 443 ssl;\n location /static/ { alias /srv/assets/; }\n}\n",
			[]string{`static = "/srv/assets/"`, "strip_prefix = true"}, nil},
		{"regex and named locations", "server {\n listen 443 ssl;\n location ~ ^/ws/(\\d+)$ { proxy_pass http://a; }\n location @fallback { proxy_pass http://b; }\n location / { proxy_pass http://127.0.0.1:1; }\n}\n",
			nil, []string{"c.conf:3: location ~ ^/ws/(\\d+)$ dropped: regular expression locations are not translated", "c.conf:4: location @fallback dropped"}},
		{"unix socket and headers", "server {\n listen 443 ssl;\n location /ws { proxy_pass http://unix:/run/app.sock; proxy_set_header Host app.internal; proxy_set_header Accept-Encoding \"\"; proxy_set_header X-User $remote_user; }\n}\n",
			[]string{`backend = "ws+unix:///run/app.sock"`, `set_headers = { Host = "app.internal" }`, `remove_headers = ["Accept-Encoding"]`}, []string{"proxy_set_header X-User $remote_user dropped: set_headers takes fixed values"}},
		{"short read timeout and hosts", "server {\n listen 443 ssl;\n}\nserver {\n listen 443 ssl;\n server_name .example.com;\n proxy_read_timeout 20s;\n location /ws { proxy_pass http://127.0.0.1:1; }\n}\n",
			[]string{`host = "example.com"`, `host = "*.example.com"`, `idle_timeout = "20s"`}, []string{`idle_timeout = "20s", shorter than nginx's 60 s default`}},
		{"TLS 1.3 only", "server {\n listen 443 ssl;\n ssl_protocols TLSv1.3;\n location / { proxy_pass http://127.0.0.1:1; }\n}\n",
			[]string{`min_version = "1.3"`}, nil},
		{"apache virtual hosts", "Listen 80\nListen 443\n<VirtualHost *:80>\n  ServerName chat.example.com\n  Redirect permanent / https://chat.example.com/\n</VirtualHost>\n" +
			"<IfModule mod_ssl.c>\n<VirtualHost *:443>\n  ServerName chat.example.com\n  SSLEngine on\n  SSLCertificateFile /etc/a.pem\n  SSLCertificateKeyFile /etc/a.key\n  ProxyPreserveHost On\n" +
			"  <Location /ws>\n    ProxyPass ws://127.0.0.1:3000/ws\n  </Location>\n  ProxyTimeout 300\n</VirtualHost>\n</IfModule>\n",
			[]string{`listen = ":443"`, "[redirect]", `listen = ":80"`, `path = "/ws"`, `idle_timeout = "5m"`},
			[]string{"c.conf:5: Redirect permanent / https://chat.example.com/ → [redirect]", "ProxyPreserveHost On: built in", "c.conf:9: ServerName chat.example.com: routes name no host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			write(t, ".", "c.conf", tc.conf)
			res, err := Import("c.conf", Options{})
			if err != nil {
				t.Fatalf("%v", err)
			}
			var notes []string
			for _, n := range res.Notes {
				notes = append(notes, n.String())
			}
			all := strings.Join(notes, "\n")
			for _, want := range tc.toml {
				if !strings.Contains(string(res.TOML), want) {
					t.Errorf("TOML lacks %q:\n%s", want, res.TOML)
				}
			}
			for _, want := range tc.notes {
				if !strings.Contains(all, want) {
					t.Errorf("notes lack %q:\n%s", want, all)
				}
			}
		})
	}
}

// TestNothingRoutable guards the exit-1 case's sentinel.
func TestNothingRoutable(t *testing.T) {
	t.Chdir(t.TempDir())
	write(t, ".", "c.conf", "events {}\n")
	if _, err := Import("c.conf", Options{}); !errors.Is(err, ErrNothingRoutable) {
		t.Errorf("got %v", err)
	}
}

// FuzzParse guards both tokenizers, and the translation after them,
// against input that makes them panic, hang or pass the import's bounds:
// what parses nests no deeper than maxBlockDepth, and what translates
// makes no more than maxRoutes routes. The seeds, small versions of
// hostile inputs (nesting past the bound, continuation lines, "${" with no
// "}", many locations and ProxyPass lines, names times locations), run
// as ordinary tests.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"server { listen 443 ssl; location /wss { proxy_pass http://127.0.0.1:8282; } }",
		"a \"b\\\"c\" 'd' ${e}f;", "}", "{", "#", "<VirtualHost *:443>\nProxyPass /a ws://b\n</VirtualHost>", "A \"b\" # c\\\n d",
		strings.Repeat("a{", maxBlockDepth+1),
		strings.Repeat("a{", maxBlockDepth) + strings.Repeat("}", maxBlockDepth),
		strings.Repeat("a {\n", 3) + "  }\n }\n}\n",
		strings.Repeat("<a>\n", maxBlockDepth+1),
		strings.Repeat("<a>\n", maxBlockDepth) + strings.Repeat("</a>\n", maxBlockDepth),
		"ServerAlias \\\n" + strings.Repeat(" a\\\n", 50) + "\n",
		"a" + strings.Repeat("${", 50) + ";",
		"a ${b\nc} d;\ne;",
		locations(20),
		proxyPasses(20),
		"Listen 80\nListen 443\n<VirtualHost *:80>\n  ServerName chat.example.com\n  Redirect permanent / https://chat.example.com/\n</VirtualHost>\n" +
			"<IfModule mod_ssl.c>\n<VirtualHost *:443>\n  ServerName chat.example.com\n  ServerAlias a.example.com\n  SSLEngine on\n  SSLCertificateFile /etc/a.pem\n" +
			"  RequestHeader set X-A b\n  <Location /ws>\n    ProxyPass ws://127.0.0.1:3000/ws\n  </Location>\n  ProxyTimeout 300\n</VirtualHost>\n</IfModule>\n",
		"server {\n listen 443 ssl;\n}\nserver {\n listen 443 ssl;\n server_name a b c .d;\n proxy_set_header X \"\";\n" +
			" location /a { proxy_pass http://127.0.0.1:1; }\n location /a { root /x; }\n}\n",
		"include /dev/zero;\n", "Include /dev/zero\n",
		"limit_conn_zone;", "upstream u { server; }\nserver { listen 443 ssl; location / { proxy_pass http://u; } }", "Redirect\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range []string{"nginx", "apache"} {
			var nodes []*node
			var err error
			if d == "nginx" {
				nodes, err = parseNginx("f", []byte(s), maxDirectives)
			} else {
				nodes, err = parseApache("f", []byte(s), maxDirectives, nil)
			}
			if err != nil {
				continue
			}
			if got := depth(nodes); got > maxBlockDepth {
				t.Errorf("%s: parsed blocks %d deep, beyond maxBlockDepth (%d)", d, got, maxBlockDepth)
			}
			res, err := newTranslation(d, "f", Options{}).translate(nodes)
			if err == nil && res.Routes > maxRoutes {
				t.Errorf("%s: %d routes, beyond maxRoutes (%d)", d, res.Routes, maxRoutes)
			}
		}
		dialect([]byte(s))
	})
}

// depth is how deep blocks nest in nodes.
func depth(nodes []*node) int {
	d := 0
	for _, n := range nodes {
		if n.hasBlock {
			d = max(d, 1+depth(n.block))
		}
	}
	return d
}
