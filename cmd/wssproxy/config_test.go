package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestBrokenConfigs guards `wssproxy -t` on each file in testdata/broken:
// exit with an error, report every problem the file's "# want:" lines name
// (file, line, key, message) and nothing else, print no success line.
func TestBrokenConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/broken/*.toml")
	if len(files) == 0 {
		t.Fatal("no broken examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, "testdata/broken/"+w)
				}
			}
			var stdout, stderr bytes.Buffer
			err = run(context.Background(), []string{"-t", "-config", f}, &stdout, &stderr)
			if err == nil {
				t.Fatalf("-t accepted %s", f)
			}
			got := strings.Split(err.Error(), "\n")
			for _, w := range wants {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("missing error %q", w)
				}
			}
			if len(got) != len(wants) {
				t.Errorf("%d errors, want %d:\n%s", len(got), len(wants), err)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestCertificateErrors guards that -t reads the certificate files and says
// which one is at fault.
func TestCertificateErrors(t *testing.T) {
	certA, _ := testutil.Cert(t)
	certB, _ := testutil.Cert(t)
	certFileA, keyFileA := testutil.WriteKeyPair(t, certA)
	_, keyFileB := testutil.WriteKeyPair(t, certB)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct{ name, cert, key, want string }{
		{"good", certFileA, keyFileA, ""},
		{"mismatch", certFileA, keyFileB, ":5: tls.cert: key " + keyFileB + " does not match certificate " + certFileA},
		{"missing cert", filepath.Join(dir, "nope.pem"), keyFileA, ":5: tls.cert: read certificate: open "},
		{"missing key", certFileA, filepath.Join(dir, "nope.key"), ":6: tls.key: read key: open "},
		{"cert not PEM", notPEM, keyFileA, ":5: tls.cert: " + notPEM + ": no PEM CERTIFICATE block"},
		{"key not PEM", certFileA, notPEM, ":6: tls.key: " + notPEM + ": no PEM PRIVATE KEY block"},
		{"key is a certificate", certFileA, certFileA, ":6: tls.key: " + certFileA + ": no PEM PRIVATE KEY block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte("[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n[tls]\ncert = \""+tc.cert+"\"\nkey = \""+tc.key+"\"\n"), 0o600)
			var stdout bytes.Buffer
			err := run(context.Background(), []string{"-t", "-config", cfg}, &stdout, &bytes.Buffer{})
			if tc.want == "" {
				if err != nil || !strings.Contains(stdout.String(), "test is successful") {
					t.Fatalf("good pair: %v %q", err, stdout.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), cfg+tc.want) {
				t.Fatalf("got %v, want %q", err, cfg+tc.want)
			}
		})
	}
}

// TestExamplesParse guards that every configuration in examples/ is valid,
// with its certificate and directory paths pointed at real files here.
func TestExamplesParse(t *testing.T) {
	ssl := t.TempDir() // stands in for /etc/ssl
	for _, name := range []string{"server", "wildcard.example.com"} {
		cert, _ := testutil.Cert(t)
		c, k := testutil.WriteKeyPair(t, cert)
		os.Rename(c, filepath.Join(ssl, name+".pem"))
		os.Rename(k, filepath.Join(ssl, name+".key"))
	}
	os.Link(filepath.Join(ssl, "server.pem"), filepath.Join(ssl, "private-ca.pem"))
	files, _ := filepath.Glob("../../examples/*.toml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.NewReplacer(
				"/etc/ssl/", ssl+"/", "/var/www/html", t.TempDir(), "/var/lib/wssproxy/acme", t.TempDir(),
				"/var/log/wssproxy/", t.TempDir()+"/",
			).Replace(string(data))
			if _, err := parseConfig(f, []byte(s)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFullExampleCoversEveryKey guards that examples/wssproxy.toml, the
// annotated reference, sets every configuration key there is.
func TestFullExampleCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../examples/wssproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for k := range keyLines(string(data)) {
		set[regexp.MustCompile(`\[\d+\]`).ReplaceAllString(k, "")] = true
	}
	for _, key := range allKeys() {
		if !set[key] {
			t.Errorf("examples/wssproxy.toml does not set %s", key)
		}
	}
}

// TestReadmeReference guards that README.md's configuration reference lists
// exactly the keys the configuration structs have.
func TestReadmeReference(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(data), "<!-- config-reference -->")
	ref, _, ok2 := strings.Cut(ref, "<!-- /config-reference -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- config-reference --> section")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)`").FindAllStringSubmatch(ref, -1) {
		documented[m[1]] = true
	}
	for _, key := range allKeys() {
		if !documented[key] {
			t.Errorf("README reference lacks `%s`", key)
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("README reference documents `%s`, which is no key", key)
	}
}

// allKeys lists every configuration key, dotted, with "route." for the keys
// of a [[route]].
func allKeys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for _, k := range keysOf(t) {
			ft, isTable := fieldByKey(t, k)
			if isTable && ft != reflect.TypeFor[proxy.Config]() {
				walk(prefix+k+".", ft)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", reflect.TypeFor[fileConfig]())
	return out
}

// TestKeyLines guards the scanner that finds a key's line, on the TOML
// constructs that could fool it.
func TestKeyLines(t *testing.T) {
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

// FuzzParseConfig guards that no file content makes the configuration
// loader panic, and that what it accepts is a valid configuration.
func FuzzParseConfig(f *testing.F) {
	for _, glob := range []string{"../../examples/*.toml", "testdata/broken/*.toml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte("[[route]]\npath='/'\nbackend='ws://h:1'\n[route.x]\ny=1\n[[route.z]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := parseConfig("fuzz.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		if err := fc.Config.Validate(); err != nil {
			t.Errorf("accepted an invalid config: %v", err)
		}
	})
}
