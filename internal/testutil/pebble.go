package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
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
// validity. It returns once the DNS server answers, the ACME directory is
// served and the management interface serves the root.
//
// Neither program can listen on port 0 and report the port, so their ports
// are picked free and closed again; another process (a second copy of the
// suite) may take one in between, and the program then exits. Such a start
// is tried again on new ports, twice at most.
func StartPebble(t testing.TB, httpPort, tlsPort int, validity time.Duration) *Pebble {
	t.Helper()
	ctx := Context(t, time.Minute)
	dir := moduleDir(t, "github.com/letsencrypt/pebble/v2")
	for attempt := 1; ; attempt++ {
		p, err := startPebble(t, ctx, dir, httpPort, tlsPort, validity)
		if err == nil {
			return p
		}
		if !errors.Is(err, errExited) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("pebble, attempt %d: %v; again on other ports", attempt, err)
	}
}

// errExited is a program that exited before it was ready.
var errExited = errors.New("exited before it was ready")

func startPebble(t testing.TB, ctx context.Context, dir string, httpPort, tlsPort int, validity time.Duration) (*Pebble, error) {
	t.Helper()
	dns := freeDNSAddr(t)
	dnsLogs := &Logs{}
	dnsCmd, dnsDone := start(t, dnsLogs, toolPath(t, "pebble-challtestsrv"), nil,
		"-dnsserver", dns, "-management", freeTCPAddr(t), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	stopDNS := func() { dnsCmd.Process.Kill(); <-dnsDone }
	if err := waitReady(ctx, "pebble-challtestsrv", dnsLogs, dnsDone, func() error { return resolves(ctx, dns) }); err != nil {
		stopDNS()
		return nil, err
	}

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
	client := p.apiClient(t)
	defer client.CloseIdleConnections()
	// Pebble opens its management listener in a goroutine of its own, so
	// the API answering says nothing of it: wait for both.
	err := waitReady(ctx, "pebble", p.logs, p.done, func() error {
		if err := getBody(ctx, client, p.DirectoryURL, "newNonce"); err != nil {
			return err
		}
		return getBody(ctx, client, "https://"+p.mgmt+"/roots/0", "-----BEGIN CERTIFICATE-----")
	})
	if err != nil {
		p.Stop()
		stopDNS()
		return nil, err
	}
	return p, nil
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
	client := p.apiClient(t)
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + p.mgmt + "/roots/0")
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

// apiClient is a client that trusts the certificate of Pebble's API and
// management interface.
func (p *Pebble) apiClient(t testing.TB) *http.Client {
	t.Helper()
	api, err := os.ReadFile(p.APIRoots)
	if err != nil {
		t.Fatal(err)
	}
	apiPool := x509.NewCertPool()
	apiPool.AppendCertsFromPEM(api)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiPool}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
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

// waitReady waits until ready returns nil, trying again every 20 ms (a
// port that starts to answer gives no event), and fails when the program,
// whose output is logs, exits first (done is closed) or ctx ends.
func waitReady(ctx context.Context, name string, logs *Logs, done <-chan struct{}, ready func() error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s %w: %v\n%s", name, errExited, err, logs)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v\n%s", name, err, logs)
		case <-tick.C:
		}
	}
}

// resolves asks the DNS server at addr, over TCP, for a name's A record:
// pebble-challtestsrv answers every name with 127.0.0.1.
func resolves(ctx context.Context, addr string) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips, err := r.LookupIP(qctx, "ip4", "ready.wssproxy.test")
	if err != nil {
		return err
	}
	if len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("DNS answered %v, want 127.0.0.1", ips)
	}
	return nil
}

// getBody GETs url and checks that the answer is a 200 whose body holds
// want.
func getBody(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s %.200q", url, resp.Status, body)
	}
	return nil
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
