package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestModes and TestIdleSteps stay serial: they measure this process
// (-pids is its own PID; the proxy and the backend run here), and a test
// running beside them would be measured too. TestRunEndsAfterWindow stays
// serial too: it bounds a whole run's time, and a test beside it would
// slow that run. (go test runs the parallel tests, TestDirect and
// TestBounds, after these.)

func TestMain(m *testing.M) {
	testutil.ExtendedConnect() // the proxies here take WebSockets over HTTP/2 (-h2)
	os.Exit(m.Run())
}

// proxyURL runs wssproxy in this process in front of the echo backend and
// returns its wss:// URL and a CA file that trusts it.
func proxyURL(t *testing.T) (string, string) {
	url, ca, _ := countingProxy(t, proxy.Config{})
	return url, ca
}

// countingProxy is proxyURL for cfg (its routes set here), with the number
// of TCP connections the proxy has accepted so far.
func countingProxy(t *testing.T, cfg proxy.Config) (string, string, func() int64) {
	t.Helper()
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	cfg.Routes = []proxy.Route{{Path: "/wss", Backend: "ws://" + backend}}
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, tcfg := testutil.Cert(t)
	tcfg.Certificates = []tls.Certificate{*cert}
	tcfg.NextProtos = []string{"h2", "http/1.1"} // as cmd/wssproxy's TLS configuration offers
	ln := &countingListener{Listener: testutil.Listen(t)}
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, tcfg) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	return "wss://" + ln.Addr().String() + "/wss", ca, ln.accepted.Load
}

type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// load runs wsload and returns its JSON line, decoded, and its human line.
// Decoding into result makes a missing field a zero the test reports, not
// a panic.
func load(t *testing.T, args ...string) (*result, string) {
	t.Helper()
	return loadWithin(t, time.Minute, args...)
}

func loadWithin(t *testing.T, limit time.Duration, args ...string) (*result, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx := testutil.Context(t, limit)
	if err := run(ctx, args, &out, &errb); err != nil {
		t.Fatalf("wsload %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("wsload %v: still running when its %v limit ended it", args, limit)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a JSON line and a human line, got:\n%s", out.String())
	}
	var r result
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("JSON line %q: %v", lines[0], err)
	}
	if r.Errors != 0 {
		t.Fatalf("errors: %+v", r)
	}
	return &r, lines[1]
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
	if r.Messages < 1 || r.P99ms <= 0 || r.CPUusPerMsg <= 0 {
		t.Errorf("rtt: want messages, p99_ms and proxy_cpu_us_per_msg: %+v", r)
	}
	if !strings.Contains(human, "msgs/s") || !strings.Contains(human, "µs/msg") {
		t.Errorf("rtt human line: %s", human)
	}

	r, _ = load(t, append([]string{"-mode", "throughput", "-c", "2", "-size", "65536"}, common...)...)
	if r.MBUp <= 0 || r.MBDown <= 0 || r.CPUmsPerMB <= 0 {
		t.Errorf("throughput: want mb_up, mb_down and proxy_cpu_ms_per_mb: %+v", r)
	}

	r, _ = load(t, append([]string{"-mode", "handshake", "-c", "2"}, common...)...)
	if r.Handshake < 1 || r.CPUusPerHs <= 0 {
		t.Errorf("handshake: want handshakes and proxy_cpu_us_per_handshake: %+v", r)
	}

	r, _ = load(t, "-mode", "idle", "-n", "40", "-hold", "0s", "-sources", "4", "-url", url, "-ca", ca, "-server-name", "localhost", "-pids", pid)
	if r.Opened != 40 || r.Echoed != 40 || r.RSSHoldingKiB <= 0 {
		t.Errorf("idle: want 40 opened, 40 still echoing and proxy_rss_kib_holding: %+v", r)
	}
}

// TestModesH2 guards -h2: every mode runs its WebSockets as streams of
// HTTP/2 connections, -streams to a connection (so 40 idle tunnels at 10
// a connection are 4 TLS connections), and does the same real work as
// over HTTP/1.1; a server that does not take WebSockets over HTTP/2 is
// named as such (in this process Go offers extended CONNECT whatever the
// proxy's setting, and the proxy answers 405; a wssproxy process with the
// feature off does not offer it).
func TestModesH2(t *testing.T) {
	t.Parallel()
	on := true
	url, ca, accepted := countingProxy(t, proxy.Config{HTTP2WebSockets: &on})
	common := []string{"-h2", "-url", url, "-ca", ca, "-server-name", "localhost", "-warmup", "0s", "-d", "300ms"}
	if r, _ := load(t, append([]string{"-mode", "rtt", "-c", "4"}, common...)...); r.Messages < 1 {
		t.Errorf("rtt: no messages: %+v", r)
	}
	if r, _ := load(t, append([]string{"-mode", "throughput", "-c", "2", "-size", "65536"}, common...)...); r.MBUp <= 0 || r.MBDown <= 0 {
		t.Errorf("throughput: want mb_up and mb_down: %+v", r)
	}
	if r, _ := load(t, append([]string{"-mode", "handshake", "-c", "2"}, common...)...); r.Handshake < 1 {
		t.Errorf("handshake: no handshakes: %+v", r)
	}
	before := accepted()
	r, _ := load(t, "-mode", "idle", "-h2", "-n", "40", "-streams", "10", "-hold", "0s", "-url", url, "-ca", ca, "-server-name", "localhost")
	if r.Opened != 40 || r.Echoed != 40 {
		t.Errorf("idle: want 40 opened and still echoing: %+v", r)
	}
	if n := accepted() - before; n != 4 {
		t.Errorf("idle: 40 streams at 10 a connection took %d TLS connections, want 4", n)
	}

	url, ca, _ = countingProxy(t, proxy.Config{}) // http2_websockets off, the default
	var out, errb bytes.Buffer
	err := run(testutil.Context(t, 30*time.Second), []string{"-mode", "rtt", "-c", "1", "-h2", "-url", url, "-ca", ca,
		"-server-name", "localhost", "-warmup", "0s", "-d", "100ms"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "extended CONNECT answered 405") {
		t.Errorf("against http2_websockets off: got %v, want the 405 named", err)
	}
}

// TestRate guards -rate: round trips are paced to the rate over all
// connections, so a window holds at most the ones scheduled in it (a
// loaded machine may hold fewer, never more), where unpaced connections
// make thousands.
func TestRate(t *testing.T) {
	t.Parallel()
	url, ca := proxyURL(t)
	r, _ := load(t, "-mode", "rtt", "-c", "4", "-rate", "40", "-url", url, "-ca", ca, "-server-name", "localhost",
		"-warmup", "200ms", "-d", "1s")
	if r.Messages < 1 || r.Messages > 40+4 {
		t.Errorf("-rate 40 over a 1 s window: %d round trips, want 1 to 44", r.Messages)
	}
}

// TestIdleSteps guards -steps: one run grows the connections it holds
// through each count in turn, reads the process's RSS at each, and at the
// end every connection of every step still echoes.
func TestIdleSteps(t *testing.T) {
	url, ca := proxyURL(t)
	r, human := load(t, "-mode", "idle", "-steps", "10,25,40", "-hold", "0s", "-sources", "4",
		"-url", url, "-ca", ca, "-server-name", "localhost", "-pids", strconv.Itoa(os.Getpid()))
	if r.Opened != 40 || r.Echoed != 40 {
		t.Errorf("want 40 opened and still echoing: %+v", r)
	}
	if len(r.Steps) != 3 {
		t.Fatalf("want 3 steps, got %+v", r.Steps)
	}
	for i, want := range []int{10, 25, 40} {
		if s := r.Steps[i]; s.Held != want || s.RSSHoldingKiB <= 0 {
			t.Errorf("step %d: want %d held and proxy_rss_kib_holding: %+v", i, want, s)
		}
	}
	if last := r.Steps[2]; last.RSSHoldingKiB != r.RSSHoldingKiB || last.RSSKiBPerConn != r.RSSKiBPerConn {
		t.Errorf("the top-level RSS fields should be the last step's: %+v against %+v", r, last)
	}
	if !strings.Contains(human, "at 10/25/40 held") {
		t.Errorf("idle human line: %s", human)
	}
}

// TestRunEndsAfterWindow guards -d bounding a run: with one message in
// flight per connection the writer finds nothing in flight when the window
// ends, and the reader must stop then, not wait out a read deadline (it
// used to wait 10 s, more than this run's whole limit).
func TestRunEndsAfterWindow(t *testing.T) {
	url, ca := proxyURL(t)
	for _, mode := range []string{"throughput", "rtt"} {
		t.Run(mode, func(t *testing.T) {
			r, _ := loadWithin(t, 8*time.Second, "-mode", mode, "-c", "2", "-window", "1", "-size", "1024",
				"-url", url, "-ca", ca, "-server-name", "localhost", "-warmup", "0s", "-d", "200ms")
			if r.MBUp+float64(r.Messages) <= 0 {
				t.Errorf("%s: no work counted: %+v", mode, r)
			}
		})
	}
}

// TestDirect guards a plain ws:// target (a backend measured directly).
func TestDirect(t *testing.T) {
	t.Parallel()
	url := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{})) + "/"
	r, _ := load(t, "-mode", "rtt", "-c", "2", "-url", url, "-warmup", "0s", "-d", "200ms")
	if r.Messages < 1 {
		t.Errorf("direct rtt: %+v", r)
	}
}

// TestBounds guards the limits that keep a run bounded, and refusals that
// name the flag.
func TestBounds(t *testing.T) {
	t.Parallel()
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
		{"steps not increasing", []string{"-mode", "idle", "-steps", "100,50"}, "-steps: want increasing"},
		{"steps too many", []string{"-mode", "idle", "-steps", "1000,20000"}, "-steps: want counts from 1 to 19000"},
		{"steps not a number", []string{"-mode", "idle", "-steps", "1000,lots"}, "-steps: want counts"},
		{"steps outside idle", []string{"-mode", "rtt", "-steps", "10,20"}, "-steps: only for -mode idle"},
		{"steps and n", []string{"-mode", "idle", "-n", "10", "-steps", "10,20"}, "-n and -steps"},
		{"h2 over plain ws", []string{"-h2", "-url", "ws://127.0.0.1:1/"}, "-h2: WebSockets over HTTP/2 need a wss:// URL"},
		{"negative rate", []string{"-rate", "-1"}, "-rate: want 0 to 1000000"},
		{"streams out of range", []string{"-h2", "-streams", "0"}, "-streams: want 1 to 10000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(testutil.Context(t, 10*time.Second), c.args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}
