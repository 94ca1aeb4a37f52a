package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
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

	mgmt    string
	cmd     *exec.Cmd
	done    chan struct{}
	logs    *Logs
	stopDNS func()
}

// PebbleOptions are what StartPebbleWith sets up.
type PebbleOptions struct {
	// HTTPPort and TLSPort are where HTTP-01 and TLS-ALPN-01 are
	// validated, on 127.0.0.1.
	HTTPPort, TLSPort int
	// Profiles are the issuance profiles offered, with the lifetime of
	// their certificates. Nil: one, "default", of Validity. (Pebble picks
	// one at random for an order that names none.)
	Profiles map[string]time.Duration
	Validity time.Duration
	// AlternateRoots is how many alternate chains, each to a root of its
	// own, Pebble offers beside the default one.
	AlternateRoots int
	// Blocked are names Pebble refuses to order for (rejectedIdentifier).
	Blocked []string
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
	return StartPebbleWith(t, PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort, Validity: validity})
}

// StartPebbleWith is StartPebble with more choices. Valid authorizations
// are never reused (PEBBLE_AUTHZREUSE=0): every order needs a challenge,
// as at Let's Encrypt from 2028.
func StartPebbleWith(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	ctx := Context(t, time.Minute)
	dir := moduleDir(t, "github.com/letsencrypt/pebble/v2")
	for attempt := 1; ; attempt++ {
		p, err := startPebble(t, ctx, dir, o)
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

func startPebble(t testing.TB, ctx context.Context, dir string, o PebbleOptions) (*Pebble, error) {
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

	p := &Pebble{APIRoots: filepath.Join(dir, "test/certs/pebble.minica.pem"), mgmt: freeTCPAddr(t), logs: &Logs{}, stopDNS: stopDNS}
	profiles := map[string]any{}
	if o.Profiles == nil {
		o.Profiles = map[string]time.Duration{"default": o.Validity}
	}
	for name, life := range o.Profiles {
		profiles[name] = map[string]any{"description": "test " + name, "validityPeriod": int(life.Seconds())}
	}
	api := freeTCPAddr(t)
	p.DirectoryURL = "https://" + api + "/dir"
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  api,
		"managementListenAddress":        p.mgmt,
		"certificate":                    filepath.Join(dir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(dir, "test/certs/localhost/key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       profiles,
		"domainBlocklist":                o.Blocked,
	}})
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.done = start(t, p.logs, toolPath(t, "pebble"),
		[]string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0",
			fmt.Sprintf("PEBBLE_ALTERNATE_ROOTS=%d", o.AlternateRoots)},
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

// StopDNS stops Pebble's DNS server: every validation fails from then
// on, with a problem document from the CA (a CA that refuses to issue).
func (p *Pebble) StopDNS() { p.stopDNS() }

// SetRenewalInfo makes Pebble's renewal info for leaf (ARI, RFC 9773)
// suggest the window [start, end), through its management interface.
func (p *Pebble) SetRenewalInfo(t testing.TB, leaf *x509.Certificate, start, end time.Time) {
	t.Helper()
	ari, _ := json.Marshal(map[string]any{"suggestedWindow": map[string]string{
		"start": start.UTC().Format(time.RFC3339), "end": end.UTC().Format(time.RFC3339)}})
	body, _ := json.Marshal(map[string]string{
		"Certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		"ARIResponse": string(ari),
	})
	client := p.apiClient(t)
	defer client.CloseIdleConnections()
	resp, err := client.Post("https://"+p.mgmt+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("set-renewal-info: %s %s", resp.Status, msg)
	}
}

// Logs is what Pebble and its DNS server printed.
func (p *Pebble) Logs() string { return p.logs.String() }

// Roots returns a pool with the root Pebble issues under (new at every
// start), read from its management interface.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.Root(t, 0))
	return pool
}

// Root returns Pebble's root n: 0 is the default chain's, 1 and on the
// alternate chains'.
func (p *Pebble) Root(t testing.TB, n int) *x509.Certificate {
	t.Helper()
	client := p.apiClient(t)
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("https://%s/roots/%d", p.mgmt, n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	root, _ := io.ReadAll(resp.Body)
	b, _ := pem.Decode(root)
	if b == nil {
		t.Fatalf("pebble root %d: %s", n, root)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("pebble root %d: %v", n, err)
	}
	return cert
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
