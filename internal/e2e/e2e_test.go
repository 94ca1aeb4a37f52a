// Package e2e runs wssproxy with the clients its users have: Node's `ws`
// (ws.test.mjs), headless Chromium driven by playwright-core
// (browser.test.mjs) and headless Firefox ESR driven by puppeteer-core over
// WebDriver BiDi (firefox.test.mjs); the two browsers run the same page
// tests (pages.mjs). This file builds wssproxy with the race detector,
// makes a test CA and a certificate it signed, and runs each Node suite
// against them; lib.mjs starts the backends and the wssproxy process.
//
// The suites need Node.js, `npm ci` in this directory, and for the
// browsers Debian's chromium and firefox-esr and certutil (libnss3-tools).
// Without them the tests skip and say what is missing, unless
// WSSPROXY_E2E=1, as in .ci/run, which turns a missing piece into a
// failure.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// need reports a missing prerequisite: a failure in CI, a skip elsewhere.
var need = testutil.Need

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// setup checks for Node and the npm packages, builds wssproxy with -race,
// and writes ca.pem and a leaf it signed (cert.pem, key.pem) for wss.test,
// localhost and 127.0.0.1. It returns the environment for the Node suites.
func setup(t *testing.T) (env []string, dir string) {
	t.Helper()
	_, err := exec.LookPath("node")
	need(t, err == nil, "node is not on PATH")
	need(t, exists("node_modules/ws/package.json") && exists("node_modules/playwright-core/package.json"),
		"the npm packages are missing: run `npm ci` in internal/e2e")

	dir = t.TempDir()
	bin := filepath.Join(dir, "wssproxy")
	build := exec.Command("go", "build", "-race", "-o", bin, "../../cmd/wssproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build wssproxy: %v\n%s", err, out)
	}

	now := time.Now()
	ca := testutil.Issue(t, []string{"wssproxy e2e test CA"}, true, nil, now.Add(-time.Hour), now.Add(24*time.Hour))
	leaf := testutil.Issue(t, []string{"wss.test", "localhost", "127.0.0.1"}, false, ca, now.Add(-time.Hour), now.Add(24*time.Hour))
	certFile, keyFile := testutil.WriteKeyPair(t, leaf)
	for _, f := range []struct{ from, to string }{{certFile, "cert.pem"}, {keyFile, "key.pem"}} {
		if err := os.Rename(f.from, filepath.Join(dir, f.to)); err != nil {
			t.Fatal(err)
		}
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	checkChain(t, caPEM, leaf)

	env = append(os.Environ(), "WSSPROXY_BIN="+bin, "E2E_DIR="+dir)
	return env, dir
}

// checkChain makes sure the leaf verifies against the CA for every name the
// suites use, so a broken certificate fails here and not as a browser error.
func checkChain(t *testing.T, caPEM []byte, leaf *tls.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"wss.test", "localhost", "127.0.0.1"} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Fatalf("test certificate for %s: %v", name, err)
		}
	}
}

// tapSummary matches the counts at the end of node --test's TAP output.
var tapSummary = regexp.MustCompile(`(?m)^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$`)

// runNode runs one Node test file and fails unless every test in it passed:
// none failed, none was cancelled, skipped or left as todo, and at least
// want ran.
func runNode(t *testing.T, env []string, file string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=tap", "--test-timeout=300000", file)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	counts := map[string]int{}
	for _, m := range tapSummary.FindAllStringSubmatch(out.String(), -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	bad := err != nil || counts["fail"] != 0 || counts["cancelled"] != 0 || counts["skipped"] != 0 || counts["todo"] != 0 || counts["pass"] < want
	if bad {
		t.Fatalf("node --test %s: %v; counts %v (want %d passing, nothing else)\n%s", file, err, counts, want, out.String())
	}
	t.Logf("node --test %s: %d passed\n%s", file, counts["pass"], out.String())
}

// TestNodeWS runs ws.test.mjs: the npm ws client through wssproxy to an npm
// ws backend — the seeds' exchange, subprotocols, permessage-deflate, pings
// and closes both ways, and 64 MiB messages.
func TestNodeWS(t *testing.T) {
	env, _ := setup(t)
	runNode(t, env, "ws.test.mjs", 6)
}

// TestBrowser runs browser.test.mjs: Debian's headless Chromium, trusting
// the run's CA through an NSS database (not --ignore-certificate-errors),
// loads the seeds' page over HTTP/2 through wssproxy and opens WebSockets
// from it, as streams of that connection (RFC 8441).
func TestBrowser(t *testing.T) {
	runNode(t, chromiumEnv(t), "browser.test.mjs", 9)
}

// TestBrowserAuth runs auth.test.mjs (issue 26) in Chromium: the seeds'
// page behind forward_auth with and without its session cookie, and a
// JWT offered as a subprotocol.
func TestBrowserAuth(t *testing.T) {
	runNode(t, chromiumEnv(t), "auth.test.mjs", 3)
}

// chromiumEnv is setup's environment for a Chromium suite: Debian's
// Chromium, and a HOME whose NSS database trusts the run's CA.
func chromiumEnv(t *testing.T) []string {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	need(t, exists(chromium), "no Chromium at "+chromium+" (apt-get install chromium, or set CHROMIUM)")
	_, err := exec.LookPath("certutil")
	need(t, err == nil, "certutil is not on PATH (apt-get install libnss3-tools)")
	env, dir := setup(t)

	// Chromium on Linux trusts what is in $HOME/.pki/nssdb: a fresh HOME
	// with a database that holds only the run's CA as a trusted issuer.
	home := filepath.Join(dir, "home")
	db := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", db, "--empty-password"},
		{"-A", "-d", db, "-n", "wssproxy e2e test CA", "-t", "C,,", "-i", filepath.Join(dir, "ca.pem")},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	return append(env, "HOME="+home, "CHROMIUM="+chromium)
}

// TestDashboard runs dashboard.test.mjs: the admin dashboard in headless
// Chromium with 50 live tunnels (50 rows, charts with lines), and a click
// on a close button that ends that client's tunnel with 1008.
func TestDashboard(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	need(t, exists(chromium), "no Chromium at "+chromium+" (apt-get install chromium, or set CHROMIUM)")
	env, dir := setup(t)
	env = append(env, "HOME="+filepath.Join(dir, "home"), "CHROMIUM="+chromium)
	runNode(t, env, "dashboard.test.mjs", 1)
}

// TestFirefox runs firefox.test.mjs: Debian's Firefox ESR, headless, driven
// by puppeteer-core over WebDriver BiDi, with a profile whose NSS database
// trusts the run's CA, on the same pages as TestBrowser (pages.mjs).
func TestFirefox(t *testing.T) {
	firefox := os.Getenv("FIREFOX")
	if firefox == "" {
		firefox = "/usr/bin/firefox-esr"
	}
	need(t, exists(firefox), "no Firefox at "+firefox+" (apt-get install firefox-esr, or set FIREFOX)")
	_, err := exec.LookPath("certutil")
	need(t, err == nil, "certutil is not on PATH (apt-get install libnss3-tools)")
	need(t, exists("node_modules/puppeteer-core/package.json"), "puppeteer-core is missing: run `npm ci` in internal/e2e")
	env, dir := setup(t)
	profile := filepath.Join(dir, "firefox-profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	db := "sql:" + profile
	for _, args := range [][]string{
		{"-N", "-d", db, "--empty-password"},
		{"-A", "-d", db, "-n", "wssproxy e2e test CA", "-t", "C,,", "-i", filepath.Join(dir, "ca.pem")},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	env = append(env, "HOME="+filepath.Join(dir, "home"), "FIREFOX="+firefox, "FIREFOX_PROFILE="+profile)
	runNode(t, env, "firefox.test.mjs", 9)
}
