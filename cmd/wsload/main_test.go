package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// proxyURL runs wssproxy in this process in front of the echo backend and
// returns its wss:// URL and a CA file that trusts it.
func proxyURL(t *testing.T) (string, string) {
	t.Helper()
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + backend}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, cfg := testutil.Cert(t)
	cfg.Certificates = []tls.Certificate{*cert}
	ln := testutil.Listen(t)
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, cfg) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	return "wss://" + ln.Addr().String() + "/wss", ca
}

// load runs wsload and returns its JSON line, decoded, and its human line.
func load(t *testing.T, args ...string) (map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(testutil.Context(t, time.Minute), args, &out, &errb); err != nil {
		t.Fatalf("wsload %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a JSON line and a human line, got:\n%s", out.String())
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatalf("JSON line %q: %v", lines[0], err)
	}
	if r["errors"].(float64) != 0 {
		t.Fatalf("errors: %v", r)
	}
	return r, lines[1]
}

// TestModes guards each mode end to end through a real proxy: the counts it
// reports are real work (messages echoed, bytes both ways, handshakes,
// connections that still echo after being held), and with -pids the CPU
// and RSS of the process are read.
func TestModes(t *testing.T) {
	url, ca := proxyURL(t)
	pid := strconv.Itoa(os.Getpid())
	common := []string{"-url", url, "-ca", ca, "-server-name", "localhost", "-warmup", "0s", "-d", "300ms", "-pids", pid}

	r, human := load(t, append([]string{"-mode", "rtt", "-c", "4"}, common...)...)
	if r["messages"].(float64) < 1 || r["p99_ms"].(float64) <= 0 || r["proxy_cpu_us_per_msg"] == nil {
		t.Errorf("rtt: %v", r)
	}
	if !strings.Contains(human, "msgs/s") || !strings.Contains(human, "µs/msg") {
		t.Errorf("rtt human line: %s", human)
	}

	r, _ = load(t, append([]string{"-mode", "throughput", "-c", "2", "-size", "65536"}, common...)...)
	if r["mb_up"].(float64) <= 0 || r["mb_down"].(float64) <= 0 || r["proxy_cpu_ms_per_mb"] == nil {
		t.Errorf("throughput: %v", r)
	}

	r, _ = load(t, append([]string{"-mode", "handshake", "-c", "2"}, common...)...)
	if r["handshakes"].(float64) < 1 || r["proxy_cpu_us_per_handshake"] == nil {
		t.Errorf("handshake: %v", r)
	}

	r, _ = load(t, "-mode", "idle", "-n", "40", "-hold", "0s", "-sources", "4", "-url", url, "-ca", ca, "-server-name", "localhost", "-pids", pid)
	if r["opened"].(float64) != 40 || r["still_echoing"].(float64) != 40 || r["proxy_rss_kib_holding"] == nil {
		t.Errorf("idle: %v", r)
	}
}

// TestDirect guards a plain ws:// target (a backend measured directly).
func TestDirect(t *testing.T) {
	url := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{})) + "/"
	r, _ := load(t, "-mode", "rtt", "-c", "2", "-url", url, "-warmup", "0s", "-d", "200ms")
	if r["messages"].(float64) < 1 {
		t.Errorf("direct rtt: %v", r)
	}
}

// TestBounds guards the limits that keep a run bounded, and refusals that
// name the flag.
func TestBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"too many connections", []string{"-mode", "idle", "-n", "20000"}, "-n: want 1 to 19000"},
		{"too long", []string{"-d", "11m"}, "want at most 10m0s"},
		{"unknown mode", []string{"-mode", "flood"}, "-mode: want rtt, throughput, idle or handshake"},
		{"not a websocket URL", []string{"-url", "http://127.0.0.1:1/"}, "-url: want ws://"},
		{"sources need loopback", []string{"-mode", "idle", "-url", "wss://example.com/wss"}, "needs a loopback target"},
		{"bad curve", []string{"-curves", "X448"}, "-curves: unknown"},
		{"bad pid", []string{"-pids", "nginx"}, "-pids:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(testutil.Context(t, 10*time.Second), c.args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}
