package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
	"golang.org/x/crypto/bcrypt"
)

// TestReadmeCheck guards the README's -t example: its lines are what -t
// prints for testdata/broken/readme.toml, the file it was run on.
func TestReadmeCheck(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(readme), "$ wssproxy -t -config wssproxy.toml\n")
	example, _, _ = strings.Cut(example, "```")
	if !ok || example == "" {
		t.Fatal("the README has no -t example")
	}
	err = run(context.Background(), []string{"-t", "-config", "testdata/broken/readme.toml"}, io.Discard, io.Discard)
	var got strings.Builder
	for _, line := range strings.Split(fmt.Sprint(err), "\n") {
		got.WriteString("wssproxy: " + strings.ReplaceAll(line, "testdata/broken/readme.toml", "wssproxy.toml") + "\n")
	}
	if got.String() != example {
		t.Errorf("-t prints:\n%s\nthe README shows:\n%s", got.String(), example)
	}
}

// TestBrokenConfigs guards `wssproxy -t` on each file in testdata/broken:
// exit with an error, report every problem the file's "# want:" lines name
// (file, line, key, message) and nothing else, sorted by line, and print
// no success line.
func TestBrokenConfigs(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/broken/*.toml")
	if len(files) == 0 {
		t.Fatal("no broken examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
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
			err = run(withoutBindCheck(context.Background()), []string{"-t", "-config", f}, &stdout, &stderr)
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
			last := 0
			for _, g := range got {
				m := regexp.MustCompile(`^[^:]+:(\d+): `).FindStringSubmatch(g)
				if m == nil {
					continue
				}
				n, _ := strconv.Atoi(m[1])
				if n < last {
					t.Errorf("not sorted by line:\n%s", err)
					break
				}
				last = n
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
	t.Parallel()
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
			t.Parallel()
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte("[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n[tls]\ncert = \""+tc.cert+"\"\nkey = \""+tc.key+"\"\n"), 0o600)
			var stdout bytes.Buffer
			err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", cfg}, &stdout, &bytes.Buffer{})
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
	t.Parallel()
	ssl := t.TempDir() // stands in for /etc/ssl
	for _, name := range []string{"server", "wildcard.example.com"} {
		cert, _ := testutil.Cert(t)
		c, k := testutil.WriteKeyPair(t, cert)
		os.Rename(c, filepath.Join(ssl, name+".pem"))
		os.Rename(k, filepath.Join(ssl, name+".key"))
	}
	os.Link(filepath.Join(ssl, "server.pem"), filepath.Join(ssl, "private-ca.pem"))
	os.Link(filepath.Join(ssl, "server.pem"), filepath.Join(ssl, "clients-ca.pem"))
	etc := t.TempDir() // stands in for /etc/wssproxy: auth's files
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	for _, name := range []string{"htpasswd", "admin.htpasswd"} {
		os.WriteFile(filepath.Join(etc, name), []byte("tom:"+string(hash)+"\n"), 0o600)
	}
	serverCert, _ := testutil.Cert(t)
	pub, _ := x509.MarshalPKIXPublicKey(serverCert.Leaf.PublicKey)
	os.WriteFile(filepath.Join(etc, "jwt-public.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
	files, _ := filepath.Glob("../../examples/*.toml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.NewReplacer(
				"/etc/ssl/", ssl+"/", "/var/www/html", t.TempDir(), "/var/lib/wssproxy/acme", t.TempDir(),
				"/var/log/wssproxy/", t.TempDir()+"/", "/etc/wssproxy/", etc+"/",
			).Replace(string(data))
			if _, err := checkSource(f, s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkSource compiles src as -t compiles a file called name that holds
// it (relative paths in it are taken from name's directory).
func checkSource(name, src string) (*compiled, error) {
	l, err := config.Parse(&config.Flags{File: name}, []byte(src))
	if err != nil {
		return nil, err
	}
	return compile(l)
}

// FuzzCheck guards that no file content makes loading and compiling it
// (-t) panic, that every error names the file, and that what it accepts
// compiles for the proxy.
func FuzzCheck(f *testing.F) {
	for _, glob := range []string{"../../examples/*.toml", "testdata/broken/*.toml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte("[[route]]\npath='/'\nbackend='ws://h:1'\n[route.x]\ny=1\n[[route.z]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := checkSource("fuzz.toml", string(data))
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml") {
					t.Errorf("error does not name the file: %q", line)
				}
			}
			return
		}
		if _, err := proxy.Compile(fc.Config); err != nil {
			t.Errorf("accepted an invalid config: %v", err)
		}
	})
}
