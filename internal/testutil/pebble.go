package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pebble is a local ACME CA (github.com/letsencrypt/pebble, pinned by the
// tool lines in go.mod) with pebble-challtestsrv as its DNS server, which
// answers every name with 127.0.0.1. Both run until the test ends.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// APIRoots is a PEM file that verifies the ACME API's own certificate.
	APIRoots string

	mgmt string
	cmd  *exec.Cmd
	done chan struct{}
	logs *Logs
}

// StartPebble starts a CA that validates HTTP-01 on 127.0.0.1:httpPort and
// TLS-ALPN-01 on 127.0.0.1:tlsPort, and issues certificates valid for
// validity.
func StartPebble(t testing.TB, httpPort, tlsPort int, validity time.Duration) *Pebble {
	t.Helper()
	dir := moduleDir(t, "github.com/letsencrypt/pebble/v2")
	dns := freeDNSAddr(t)
	dnsMgmt := freeTCPAddr(t)
	start(t, &Logs{}, toolPath(t, "pebble-challtestsrv"), nil,
		"-dnsserver", dns, "-management", dnsMgmt, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	waitTCP(t, dnsMgmt)

	p := &Pebble{APIRoots: filepath.Join(dir, "test/certs/pebble.minica.pem"), mgmt: freeTCPAddr(t), logs: &Logs{}}
	api := freeTCPAddr(t)
	p.DirectoryURL = "https://" + api + "/dir"
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  api,
		"managementListenAddress":        p.mgmt,
		"certificate":                    filepath.Join(dir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(dir, "test/certs/localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(validity.Seconds()),
		}},
	}})
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.done = start(t, p.logs, toolPath(t, "pebble"),
		[]string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"},
		"-config", cfgFile, "-strict", "-dnsserver", dns)
	waitTCP(t, api)
	return p
}

// Stop stops the CA, so that a test can prove nothing more is asked of it.
func (p *Pebble) Stop() {
	p.cmd.Process.Kill()
	<-p.done
}

// Logs is what Pebble and its DNS server printed.
func (p *Pebble) Logs() string { return p.logs.String() }

// Roots returns a pool with the root Pebble issues under (new at every
// start), read from its management interface.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	api, err := os.ReadFile(p.APIRoots)
	if err != nil {
		t.Fatal(err)
	}
	apiPool := x509.NewCertPool()
	apiPool.AppendCertsFromPEM(api)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiPool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	root, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root: %s", root)
	}
	return pool
}

// start runs a program until the test ends, its output into logs.
func start(t testing.TB, logs *Logs, bin string, env []string, args ...string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), logs)
		}
	})
	return cmd, done
}

// toolPath builds (once, cached by the go command) a tool named in go.mod
// and returns its path, so it can be run and stopped by its own PID.
func toolPath(t testing.TB, name string) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", name).Output()
	if err != nil {
		t.Fatalf("go tool -n %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func moduleDir(t testing.TB, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", mod, err)
	}
	return strings.TrimSpace(string(out))
}

func freeTCPAddr(t testing.TB) string {
	t.Helper()
	return ClosedPort(t)
}

// freeDNSAddr returns a loopback address whose port is free for both TCP
// and UDP, as a DNS server binds both.
func freeDNSAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// waitTCP waits until something accepts connections on addr.
func waitTCP(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Port is the port of a "host:port" address.
func Port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}
