package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/import/*/want.toml and want.stderr from the output")

// importInputs are the names a case's input file may have.
var importInputs = []string{"nginx.conf", "httpd.conf", "httpd-ssl.conf"}

// importCase runs `wssproxy import FILE` in testdata/import/NAME, where the
// case's messages name its files as a user's would ("nginx.conf:10: …").
func importCase(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	in := ""
	for _, name := range importInputs {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			in = name
		}
	}
	if in == "" {
		t.Fatalf("%s has none of %v", dir, importInputs)
	}
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	err = run(context.Background(), append(append([]string{"import"}, args...), in), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestImport guards `wssproxy import` on every case in testdata/import
// (the Workerman FAQ's nginx and Apache blocks as the seeds give them, in
// Korean and in Japanese; a certbot-managed site with includes; an upstream
// with weights and ip_hash; socket.io beside a static root; oauth2-proxy's
// auth_request; broken braces;
// nothing routable): stdout and stderr match want.toml and want.stderr
// (-update rewrites them), a failure exits 1 with nothing on stdout, and
// every configuration printed passes `wssproxy -t` once the certificate
// files and folders it names exist.
func TestImport(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/import/*")
	if len(dirs) < 8 {
		t.Fatalf("%d import cases", len(dirs))
	}
	for _, dir := range dirs {
		abs, _ := filepath.Abs(dir)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if filepath.Base(dir) == "certbot" && exists("/etc/letsencrypt/options-ssl-nginx.conf") {
				t.Skip("this machine has certbot's /etc/letsencrypt/options-ssl-nginx.conf, which the case expects to be missing")
			}
			stdout, stderr, err := importCase(t, abs)
			var exit *cli.ExitError
			wantTOML, tomlErr := os.ReadFile(filepath.Join(abs, "want.toml"))
			failing := errors.Is(tomlErr, os.ErrNotExist) // the case declares a failure
			if *update {
				failing = err != nil
				os.Remove(filepath.Join(abs, "want.toml"))
			}
			switch {
			case failing && (!errors.As(err, &exit) || exit.Code != 1):
				t.Errorf("import: %v, want exit 1", err)
			case !failing && err != nil:
				t.Fatalf("import: %v\n%s", err, stderr)
			case failing && stdout != "":
				t.Errorf("stdout on failure:\n%s", stdout)
			}
			golden(t, filepath.Join(abs, "want.stderr"), stderr)
			if failing {
				return
			}
			golden(t, filepath.Join(abs, "want.toml"), stdout)
			if !*update && stdout != string(wantTOML) {
				return // reported by golden
			}
			checkImported(t, []byte(stdout))
		})
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", filepath.Base(path), got, want)
	}
}

// withFiles decodes an imported configuration and points every
// certificate at a real pair made for the test, and every static folder at
// a real folder: the paths of the server it came from do not exist here.
func withFiles(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var cfg map[string]any
	if _, err := toml.Decode(string(data), &cfg); err != nil {
		t.Fatalf("imported TOML does not parse: %v\n%s", err, data)
	}
	pair := func(m map[string]any) {
		if _, ok := m["cert"]; ok {
			cert, _ := testutil.Cert(t)
			m["cert"], m["key"] = testutil.WriteKeyPair(t, cert)
		}
	}
	if tlsSec, ok := cfg["tls"].(map[string]any); ok {
		pair(tlsSec)
		certs, _ := tlsSec["certificate"].([]map[string]any)
		for _, c := range certs {
			pair(c)
		}
	}
	routes, _ := cfg["route"].([]map[string]any)
	for _, r := range routes {
		if _, ok := r["static"]; ok {
			r["static"] = t.TempDir()
		}
	}
	return cfg
}

func writeTOML(t *testing.T, cfg map[string]any) string {
	t.Helper()
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "imported.toml")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkImported runs `wssproxy -t` on an imported configuration.
func checkImported(t *testing.T, data []byte) {
	t.Helper()
	p := writeTOML(t, withFiles(t, data))
	var stdout, stderr bytes.Buffer
	if err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", p}, &stdout, &stderr); err != nil {
		b, _ := os.ReadFile(p)
		t.Fatalf("-t refuses the import: %v\n%s", err, b)
	}
	if !strings.Contains(stdout.String(), "test is successful") {
		t.Errorf("-t: %q", stdout.String())
	}
}

// workerman is the seeds' Workerman worker behind nginx: every message is
// answered with "ok" ($con->send('ok')). It reports each handshake's path
// and X-Real-IP.
func workerman(t *testing.T, seen chan<- [2]string) string {
	return testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		select {
		case seen <- [2]string{r.URL.Path, r.Header.Get("X-Real-IP")}:
		default:
		}
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
			if err := c.Write(r.Context(), websocket.MessageText, []byte("ok")); err != nil {
				return
			}
		}
	}))
}

// TestImportRun guards that what `wssproxy import` makes of the FAQ's
// nginx block works: the proxy started with it (listen, certificate and
// backend address moved to this test's) tunnels the seeds' exchange, "tom"
// answered with "ok", to the backend's /wss with X-Real-IP set, which the
// block asked of nginx and the import reported as built in.
func TestImportRun(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 15*time.Second)
	wd, _ := os.Getwd()
	stdout, _, err := importCase(t, filepath.Join(wd, "testdata/import/faq-nginx-ko"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(wd)
	seen := make(chan [2]string, 1)
	backend := workerman(t, seen)
	cfg := withFiles(t, []byte(stdout))
	if cfg["listen"] != ":443" {
		t.Fatalf("listen = %v, want the block's :443", cfg["listen"])
	}
	cfg["listen"] = "127.0.0.1:0"
	cfg["admin"] = map[string]any{"listen": ""}
	routes := cfg["route"].([]map[string]any)
	if len(routes) != 1 || routes[0]["path"] != "/wss" || routes[0]["backend"] != "ws://127.0.0.1:8282" {
		t.Fatalf("routes: %v", routes)
	}
	routes[0]["backend"] = "ws://" + backend
	_, addr := startRun(t, "-config", writeTOML(t, cfg))

	tlsSec := cfg["tls"].(map[string]any)
	pemData, err := os.ReadFile(tlsSec["cert"].(string))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemData)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer client.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("tom")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "ok" {
		t.Fatalf("reply %q, %v; want ok", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if got := <-seen; got != [2]string{"/wss", "127.0.0.1"} {
		t.Errorf("backend saw path %q, X-Real-IP %q; want /wss, 127.0.0.1", got[0], got[1])
	}
}

// TestImportFullChain guards the Apache certificate in two files
// (SSLCertificateFile and SSLCertificateChainFile): with -o, the import
// writes the certificate followed by the chain beside the output and names
// that file in tls.cert, and the result passes -t; clients then get the
// intermediate.
func TestImportFullChain(t *testing.T) {
	now := time.Now()
	ca := testutil.Issue(t, []string{"Test Root"}, true, nil, now.Add(-time.Hour), now.Add(time.Hour))
	inter := testutil.Issue(t, []string{"Test Intermediate"}, true, ca, now.Add(-time.Hour), now.Add(time.Hour))
	leaf := testutil.Issue(t, []string{"localhost"}, false, inter, now.Add(-time.Hour), now.Add(time.Hour))
	certFile, keyFile := testutil.WriteKeyPair(t, leaf)
	src := t.TempDir()
	chainFile := filepath.Join(src, "chain.pem")
	chainPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Certificate[0]})
	os.WriteFile(chainFile, chainPEM, 0o600)
	docRoot := t.TempDir()
	conf := fmt.Sprintf("Listen 443\n<VirtualHost *:443>\n    SSLEngine on\n    DocumentRoot %q\n    ProxyPass /wss ws://127.0.0.1:8282/wss\n"+
		"    SSLCertificateFile %s\n    SSLCertificateKeyFile %s\n    SSLCertificateChainFile %s\n</VirtualHost>\n", docRoot, certFile, keyFile, chainFile)
	os.WriteFile(filepath.Join(src, "httpd.conf"), []byte(conf), 0o600)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "wssproxy.toml")

	_, stderr, err := importCase(t, src, "-o", out)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	full := filepath.Join(outDir, "cert-fullchain.pem")
	for _, want := range []string{"httpd.conf:8: SSLCertificateChainFile " + chainFile + ": wssproxy takes the full chain in one file: wrote cert-fullchain.pem",
		"wssproxy import: wrote " + full, "wssproxy import: wrote " + out} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	leafPEM, _ := os.ReadFile(certFile)
	if got, _ := os.ReadFile(full); string(got) != string(leafPEM)+string(chainPEM) {
		t.Errorf("%s is not the certificate followed by the chain:\n%s", full, got)
	}
	data, _ := os.ReadFile(out)
	var cfg struct {
		TLS struct{ Cert, Key string } `toml:"tls"`
	}
	if _, err := toml.Decode(string(data), &cfg); err != nil || cfg.TLS.Cert != full || cfg.TLS.Key != keyFile {
		t.Fatalf("tls = %+v, %v; want cert %s, key %s", cfg.TLS, err, full, keyFile)
	}
	var so, se bytes.Buffer
	if err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", out}, &so, &se); err != nil {
		t.Fatalf("-t: %v\n%s", err, data)
	}
	pair, err := tls.LoadX509KeyPair(full, keyFile)
	if err != nil || len(pair.Certificate) != 2 {
		t.Errorf("full chain: %d certificates, %v; want leaf and intermediate", len(pair.Certificate), err)
	}
}

// TestImportDocumented guards docs/configuration.md's migration section:
// it shows the FAQ's nginx block and what `wssproxy import` prints for it,
// stdout and stderr, exactly as the golden files (which TestImport checks
// against a run) hold them.
func TestImportDocumented(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ file, fence string }{
		{"nginx.conf", "```nginx\n"}, {"want.toml", "```toml\n"}, {"want.stderr", "```\n"},
	} {
		data, err := os.ReadFile(filepath.Join("testdata/import/faq-nginx-ko", f.file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, []byte(f.fence+string(data)+"```\n")) {
			t.Errorf("docs/configuration.md's From nginx section lacks %s as a %q block", f.file, strings.TrimSpace(f.fence))
		}
	}
}
