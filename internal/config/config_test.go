package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// TestDecodeErrors guards decoding: a value of the wrong type, a duration
// without a unit, an unknown key and a [table] written for an [[array]]
// are each one error naming the key and its line, decoding goes on past
// them, and a good value of every kind decodes.
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string // errors, in order
	}{
		{"good values of every kind", `listen = ":443"
max_connections = 10
handshake_rate_per_ip = 2
trusted_proxies = ["10.0.0.0/8"]
proxy_protocol = false
[[route]]
path = "/wss"
backend = "ws://h:1"
ping_interval = "0s"
max_fails = 0
set_headers = { Host = "app" }
idle_timeout = "1m30s"
`, nil},
		{"a string for an integer", "max_header_bytes = \"64k\"\n", []string{`f.toml:1: max_header_bytes: must be a whole number (no quotes), got the string "64k"`}},
		{"a float for an integer", "max_connections = 1.5\n", []string{`f.toml:1: max_connections: must be a whole number (no quotes), got the number 1.5`}},
		{"an integer for a string", "\n\nlisten = 443\n", []string{`f.toml:3: listen: must be a string (in quotes), got the integer 443`}},
		{"a string for a number", "handshake_rate_per_ip = \"5\"\n", []string{`f.toml:1: handshake_rate_per_ip: must be a number (no quotes), got the string "5"`}},
		{"a string for a bool", "proxy_protocol = \"true\"\n", []string{`f.toml:1: proxy_protocol: must be true or false (no quotes), got the string "true"`}},
		{"a duration without a unit", "[[route]]\nidle_timeout = \"10\"\n", []string{`f.toml:2: route[1].idle_timeout: "10" has no unit: write e.g. "10s" for seconds or "10ms" for milliseconds`}},
		{"a duration as a number", "dial_timeout = 5\n", []string{`f.toml:1: dial_timeout: 5 has no unit: durations are strings, e.g. "5s" for seconds or "5ms" for milliseconds`}},
		{"a pointer duration", "[[route]]\n[[route]]\nping_interval = \"soon\"\n", []string{`f.toml:3: route[2].ping_interval: invalid duration "soon": write a number and a unit, e.g. "10s", "500ms" or "1m30s"`}},
		{"a string for an array", "[[route]]\nbackends = \"ws://h:1\"\n", []string{`f.toml:2: route[1].backends: must be an array, like ["a", "b"], got the string "ws://h:1"`}},
		{"an array element", "[[route]]\nremove_headers = [\"A\", true]\n", []string{`f.toml:2: route[1].remove_headers: element 2 must be a string (in quotes), got true`}},
		{"a header value", "[[route]]\n[route.set_headers]\nX-A = 1\n", []string{`f.toml:3: route[1].set_headers.X-A: must be a string (in quotes), got the integer 1`}},
		{"a string for a table", "tls = \"cert.pem\"\n", []string{`f.toml:1: tls: must be a table, like [tls], got the string "cert.pem"`}},
		{"a table for an array of tables", "[tls]\n[tls.certificate]\ncert = 1\n", []string{
			`f.toml:2: tls.certificate: [tls.certificate] is a single table; write [[tls.certificate]] (double brackets), once for each`,
			`f.toml:3: tls.certificate[1].cert: must be a string (in quotes), got the integer 1`}},
		{"an inline array of tables", "route = [{ path = \"/\", backend = 1 }]\n", []string{`f.toml:1: route[1].backend: must be a string (in quotes), got the integer 1`}},
		{"a date", "listen = 2026-01-01\n", []string{`f.toml:1: listen: must be a string (in quotes), got a date/time`}},
		{"unknown keys everywhere", "lsten = 1\n[tls.acme]\nhost = []\n[[route]]\n[[route]]\nbakend = 1\n[admin]\nlisten = \"\"\nremote = true\n", []string{
			`f.toml:1: lsten: unknown key (did you mean "listen"?)`,
			`f.toml:3: tls.acme.host: unknown key (did you mean "hosts"?)`,
			`f.toml:6: route[2].bakend: unknown key (did you mean "backend"?)`,
			`f.toml:9: admin.remote: unknown key`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse(&Flags{File: "f.toml"}, []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range fielderr.Flatten(l.Errors(nil)) {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestSyntaxError guards that a file that is not TOML is one error with
// its line, and nothing else is tried.
func TestSyntaxError(t *testing.T) {
	t.Parallel()
	_, err := Parse(&Flags{File: "f.toml"}, []byte("[[route]]\npath = \n"))
	if err == nil || err.Error() != `f.toml:2: expected value but found '\n' instead` {
		t.Errorf("got %v", err)
	}
}

// TestErrorsPlaced guards how the compile step's errors (keys only) are
// placed: at the line that sets the key, at its table when the key is
// missing, at the flag or variable that set it, sorted by line; and that
// one about a value that did not decode is left out.
func TestErrorsPlaced(t *testing.T) {
	t.Parallel()
	src := "listen = \":443\"\n[[route]]\npath = 1\nbackend = \"ws://h:1\"\n[[route]]\npath = \"/b\"\n"
	l, err := Parse(&Flags{File: "f.toml", PidFile: "p.pid", Given: map[string]string{"pid-file": "WSSPROXY_PID_FILE"}}, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	compiled := []error{
		fielderr.Errorf("route[2].backend", "missing"),
		fielderr.Errorf("route[1].path", "missing"), // did not decode: left out
		fielderr.Errorf("listen", "bad"),
		fielderr.Errorf("pid_file", "bad"),
	}
	var got []string
	for _, e := range fielderr.Flatten(l.Errors(errors.Join(compiled...))) {
		got = append(got, e.Error())
	}
	want := []string{
		"f.toml:1: listen: bad",
		"f.toml:3: route[1].path: must be a string (in quotes), got the integer 1",
		"f.toml:5: route[2].backend: missing",
		"WSSPROXY_PID_FILE: pid_file: bad",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRelativePaths guards that a relative path in the file is taken from
// the file's directory, whatever the working directory, and one given by a
// flag from the working directory; both come out absolute.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	cwd := t.TempDir()
	t.Chdir(cwd)
	file := filepath.Join(dir, "wssproxy.toml")
	src := `log_file = "logs/wssproxy.log"
pid_file = "/run/wssproxy.pid"
[tls]
cert = "fullchain.pem"
key = "../keys/privkey.pem"
[[tls.certificate]]
cert = "b.pem"
key = "b.key"
[tls.acme]
cache_dir = "acme"
ca_roots = "roots.pem"
[[route]]
path = "/"
static = "www"
backend_ca = "ca.pem"
socket = "app.sock"
`
	l, err := Parse(&Flags{File: file}, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := l.Routes[0]
	for _, tc := range []struct{ key, got, want string }{
		{"log_file", l.LogFile, filepath.Join(dir, "logs/wssproxy.log")},
		{"pid_file", l.PidFile, "/run/wssproxy.pid"},
		{"tls.cert", l.TLS.Cert, filepath.Join(dir, "fullchain.pem")},
		{"tls.key", l.TLS.Key, filepath.Join(filepath.Dir(dir), "keys/privkey.pem")},
		{"tls.certificate[1].cert", l.TLS.Certificates[0].Cert, filepath.Join(dir, "b.pem")},
		{"tls.certificate[1].key", l.TLS.Certificates[0].Key, filepath.Join(dir, "b.key")},
		{"tls.acme.cache_dir", l.TLS.ACME.CacheDir, filepath.Join(dir, "acme")},
		{"tls.acme.ca_roots", l.TLS.ACME.CARoots, filepath.Join(dir, "roots.pem")},
		{"route[1].static", r.Static, filepath.Join(dir, "www")},
		{"route[1].backend_ca", r.BackendCA, filepath.Join(dir, "ca.pem")},
		{"route[1].socket", r.Socket, filepath.Join(dir, "app.sock")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.key, tc.got, tc.want)
		}
	}
	// Flags are the command line's: from the working directory.
	l, err = Parse(&Flags{File: file, Cert: "c.pem", Key: "k.pem", PidFile: "w.pid"}, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if l.TLS.Cert != filepath.Join(cwd, "c.pem") || l.TLS.Key != filepath.Join(cwd, "k.pem") || l.PidFile != filepath.Join(cwd, "w.pid") {
		t.Errorf("flags: %q %q %q, want them in %s", l.TLS.Cert, l.TLS.Key, l.PidFile, cwd)
	}
	// -print-config writes what was resolved.
	var out bytes.Buffer
	if err := Print(&out, &l.File); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `static = "`+filepath.Join(dir, "www")+`"`) {
		t.Errorf("printed:\n%s", out.String())
	}
}

// TestPrintRoundTrip guards -print-config: what it prints for the full
// example reads back as the same configuration.
func TestPrintRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/wssproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	first, err := Parse(&Flags{File: "/etc/wssproxy/wssproxy.toml"}, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Errors(nil); err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	if err := Print(&printed, &first.File); err != nil {
		t.Fatal(err)
	}
	second, err := Parse(&Flags{File: "/tmp/printed.toml"}, printed.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, printed.String())
	}
	if err := second.Errors(nil); err != nil {
		t.Fatalf("%v\n%s", err, printed.String())
	}
	if !reflect.DeepEqual(first.File, second.File) {
		t.Errorf("round trip changed the configuration:\n%s", printed.String())
	}
}

// TestFullExampleCoversEveryKey guards that examples/wssproxy.toml, the
// annotated reference, sets every configuration key there is.
func TestFullExampleCoversEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/wssproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for k := range keyLines(string(data)) {
		set[regexp.MustCompile(`\[\d+\]`).ReplaceAllString(k, "")] = true
	}
	for _, key := range Keys() {
		if !set[key] {
			t.Errorf("examples/wssproxy.toml does not set %s", key)
		}
	}
}

// TestConfigurationReference guards that docs/configuration.md's reference
// lists exactly the keys the configuration structs have.
func TestConfigurationReference(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(data), "<!-- config-reference -->")
	ref, _, ok2 := strings.Cut(ref, "<!-- /config-reference -->")
	if !ok || !ok2 {
		t.Fatal("docs/configuration.md has no <!-- config-reference --> section")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)`").FindAllStringSubmatch(ref, -1) {
		documented[m[1]] = true
	}
	for _, key := range Keys() {
		if !documented[key] {
			t.Errorf("the reference lacks `%s`", key)
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("the reference documents `%s`, which is no key", key)
	}
}

// TestKeyLines guards the scanner that finds a key's line, on the TOML
// constructs that could fool it.
func TestKeyLines(t *testing.T) {
	t.Parallel()
	src := `# comment [[route]] key = 1
listen = ":443" # trailing [comment]
notes = """
[[route]]
path = "fake"
"""
list = [
  "a",   # [[route]]
  "b = c",
]
"quoted.key" = 1
a.b = 2
[tls]
cert = 'c:\path'
[[route]]
path = "/wss"
set_headers = { "X-A" = "1", B = "]" }
[[route]]
path = '''
x'''
backend = "ws://h:1"
[route.set_headers]
Y = "2"
`
	idx := keyLines(src)
	for key, want := range map[string]int{
		"listen": 2, "notes": 3, "list": 7, "quoted.key": 11, "a.b": 12, "a": 12,
		"tls": 13, "tls.cert": 14, "route": 15, "route[1]": 15, "route[1].path": 16, "route[1].set_headers": 17,
		"route[2]": 18, "route[2].path": 19, "route[2].backend": 21, "route[2].set_headers": 22,
		"route[2].set_headers.Y": 23,
	} {
		if got := idx[key]; got != want {
			t.Errorf("%s: line %d, want %d", key, got, want)
		}
	}
	if idx.find("route[2].nothing") != 18 || idx.find("route[9].x") != 15 || idx.find("nothing") != 0 {
		t.Errorf("find fallbacks: %d %d", idx.find("route[2].nothing"), idx.find("route[9].x"))
	}
}

// FuzzParse guards that no file content makes the loader panic, and that
// every error it reports names the file.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../../examples/*.toml", "../../cmd/wssproxy/testdata/broken/*.toml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte("[[route]]\npath='/'\nbackend='ws://h:1'\n[route.x]\ny=1\n[[route.z]]\n"))
	f.Add([]byte("[route]\n[route.set_headers]\nA=1\nroute=[1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(&Flags{File: "fuzz.toml"}, data)
		if err == nil {
			err = l.Errors(nil)
		}
		for _, e := range fielderr.Flatten(err) {
			if !strings.HasPrefix(e.Error(), "fuzz.toml") {
				t.Errorf("error does not name the file: %v", e)
			}
		}
	})
}

// TestDecodeOtherKinds guards the decoding of kinds no key has yet, for
// the keys to come: unsigned integers, arrays and tables of numbers.
func TestDecodeOtherKinds(t *testing.T) {
	t.Parallel()
	var v struct {
		U  uint16           `toml:"u"`
		N  []int            `toml:"n"`
		M  map[string]int64 `toml:"m"`
		OK bool             `toml:"ok"`
	}
	m := map[string]any{"u": int64(7), "n": []any{int64(1), int64(2)}, "m": map[string]any{"a": int64(3)}, "ok": true}
	d := &decoder{failed: map[string]bool{}}
	d.table("", m, reflect.ValueOf(&v).Elem())
	if len(d.errs) > 0 || v.U != 7 || len(v.N) != 2 || v.N[1] != 2 || v.M["a"] != 3 || !v.OK {
		t.Errorf("%+v %v", v, d.errs)
	}
	m = map[string]any{"u": int64(-1), "n": []any{"x"}, "m": map[string]any{"a": "3"}}
	d = &decoder{failed: map[string]bool{}}
	d.table("", m, reflect.ValueOf(&v).Elem())
	var got []string
	for _, e := range d.errs {
		got = append(got, e.Error())
	}
	want := `m.a: must be a whole number (no quotes), got the string "3"` + "\n" +
		`n: must be a whole number (no quotes), got the string "x"` + "\n" +
		`u: must not be negative, got -1`
	if strings.Join(got, "\n") != want {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}
