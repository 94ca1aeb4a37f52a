package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestReloadUnderLoad guards reload in a real process, with 500 open
// tunnels and new connections arriving all along: `-s reload` (through the
// pid file) adds a route that new connections get at once; a broken
// configuration is refused with -t's errors and changes nothing; a new
// listen address is opened before the old one closes. No tunnel and no new
// handshake is lost.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Deadline(t)
	backend := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "wssproxy.toml")
	pidFile := filepath.Join(dir, "wssproxy.pid")
	write := func(listen, extra string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf("listen = %q\npid_file = %q\nlog_level = \"debug\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = %q\n%s", listen, pidFile, backend, extra)), 0o600)
	}
	write("127.0.0.1:0", "")
	p := startProc(t, ctx, bin, "-config", cfg)
	cmd, logs, addr := p.cmd, p.logs, p.addr
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	client := insecureClient()
	defer client.CloseIdleConnections()
	dial := func(addr, path string) (*websocket.Conn, error) {
		c, _, err := websocket.Dial(ctx, "wss://"+addr+path, &websocket.DialOptions{HTTPClient: client})
		return c, err
	}
	echoes := func(c *websocket.Conn, msg string) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != msg {
			err = fmt.Errorf("got %q", got)
		}
		return err
	}

	// The 500 tunnels are read all the while, as a browser reads its
	// WebSockets: the proxy pings an idle tunnel every ping_interval (30 s)
	// and ends one whose client has not answered within ping_timeout, and a
	// slow run of this test (under load, beside the other tests) outlasts
	// the two.
	const n = 500
	type reply struct {
		msg []byte
		err error
	}
	conns := make([]*websocket.Conn, n)
	replies := make([]chan reply, n)
	var readers sync.WaitGroup
	defer readers.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	// Opened 50 at a time: one dial after another, beside the other tests'
	// goroutines in this process, took most of this test's time.
	dialErrs := make([]error, n)
	opening := make(chan struct{}, 50)
	var dials sync.WaitGroup
	for i := range conns {
		opening <- struct{}{}
		dials.Go(func() {
			defer func() { <-opening }()
			c, err := dial(addr, "/wss")
			if err != nil {
				dialErrs[i] = err
				return
			}
			conns[i], replies[i] = c, make(chan reply, 2) // an echo and the end: a reader never blocks
			readers.Go(func() {
				for {
					_, msg, err := c.Read(ctx)
					replies[i] <- reply{msg, err}
					if err != nil {
						return
					}
				}
			})
		})
	}
	dials.Wait()
	for i, err := range dialErrs {
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	// New connections, one after another, for as long as the reloads last
	// (at most 5,000).
	var made, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 5000 {
			select {
			case <-stop:
				return
			default:
			}
			c, err := dial(addr, "/wss")
			if err == nil {
				err = echoes(c, "new")
				c.CloseNow()
			}
			made.Add(1)
			if err != nil {
				failed.Add(1)
				t.Errorf("a new connection during reload: %v", err)
			}
		}
	})

	// waitMade waits until k more new connections have been made.
	waitMade := func(k int64) {
		t.Helper()
		target := made.Load() + k
		for made.Load() < target {
			select {
			case <-ctx.Done():
				t.Fatalf("new connections stalled at %d", made.Load())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitMade(20)

	// -s reload adds a route.
	write("127.0.0.1:0", "[[route]]\npath = \"/new\"\nbackend = \""+backend+"\"\n")
	if out, err := exec.Command(bin, "-s", "reload", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("-s reload: %v %s", err, out)
	}
	const reloaded = `wssproxy_config_reloads_total{result="success"}`
	waitMetric(t, ctx, admin, reloaded, "1")
	waitMade(20)
	c, err := dial(addr, "/new")
	if err != nil {
		t.Fatalf("the new route: %v", err)
	}
	c.CloseNow()

	// A broken configuration is refused; the running one stays.
	os.WriteFile(cfg, []byte("listen = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbakend = \"ws://x\"\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.Wait(t, ctx, `msg="reload refused" error=".*wssproxy.toml:4: route\[1\]\.bakend: unknown key`)
	if c, err := dial(addr, "/new"); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	} else {
		c.CloseNow()
	}
	waitMade(20)
	close(stop)
	wg.Wait()
	if made.Load() == 0 || failed.Load() > 0 {
		t.Fatalf("new connections during reloads: %d made, %d failed", made.Load(), failed.Load())
	}

	// A new listen address: opened before the old one closes.
	newAddr := testutil.ClosedPort(t)
	write(newAddr, "")
	cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(t, ctx, admin, reloaded, "2")
	logs.Wait(t, ctx, regexp.QuoteMeta("msg=listening addr="+newAddr)) // the pipe may be behind the metric
	if len(logs.Lines("msg=listening addr="+newAddr)) != 1 {
		t.Errorf("more than one line says it listens on %s:\n%s", newAddr, logs)
	}
	if c, err := dial(newAddr, "/wss"); err != nil {
		t.Fatalf("new address: %v", err)
	} else {
		c.CloseNow()
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the old address still accepts")
	}

	for i, c := range conns {
		msg := fmt.Sprint(i)
		err := c.Write(ctx, websocket.MessageText, []byte(msg))
		if err == nil {
			r := <-replies[i]
			if err = r.err; err == nil && string(r.msg) != msg {
				err = fmt.Errorf("got %q", r.msg)
			}
		}
		if err != nil {
			t.Fatalf("tunnel %d after the reloads: %v", i, err)
		}
	}
	m := scrape(t, admin)
	if m[`wssproxy_config_reloads_total{result="success"}`] != "2" || m[`wssproxy_config_reloads_total{result="failure"}`] != "1" {
		t.Errorf("reload metrics: %v %v", m[`wssproxy_config_reloads_total{result="success"}`], m[`wssproxy_config_reloads_total{result="failure"}`])
	}
	t.Logf("%d new connections during reloads, none failed; %d tunnels kept", made.Load(), n)
}

// newRunner sets up a runner for the configuration file cfg as serve does,
// without serving it or handling signals, so that a test can call reload
// itself. It returns the runner, its log and its metrics.
func newRunner(t *testing.T, cfg string) (*runner, *testutil.Logs, *prometheus.Registry) {
	t.Helper()
	o, err := parseFlags([]string{"-config", cfg}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fc := loadCompiled(t, o)
	logs := &testutil.Logs{}
	r := &runner{o: o, errc: make(chan error, 1), log: slog.New(slog.NewTextHandler(logs, nil)), fc: fc}
	certs, err := fc.tls.Manager(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.certs.Store(certs)
	r.srv = fc.proxy.Server(r.log)
	t.Cleanup(func() { r.srv.Close(); r.bg.Wait() })
	reg, err := r.newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return r, logs, reg
}

// loadCompiled loads and compiles the configuration of o, as run does.
func loadCompiled(t *testing.T, o *options) *compiled {
	t.Helper()
	l, err := config.Load(&o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := compile(l)
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

// reloads is wssproxy_config_reloads_total{result} in reg.
func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "wssproxy_config_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRefusedReloadClosesListeners guards a reload refused after it has
// opened its new listeners (here the proxy refuses it, being closed; in
// production a backend_ca or static directory that changed since the file
// was checked): both new listeners are closed again, so their ports are
// free, and the reload counts as a failure.
func TestRefusedReloadClosesListeners(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	write := func(listen, redirect string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf("listen = %q\n[redirect]\nlisten = %q\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n", listen, redirect)), 0o600)
	}
	write("127.0.0.1:0", "")
	r, logs, reg := newRunner(t, cfg)
	r.srv.Close()
	listen, redirect := testutil.ClosedPort(t), testutil.ClosedPort(t)
	write(listen, redirect)
	r.reload(ctx) // returns when the reload is done
	if len(logs.Lines(`msg="reload refused" error="proxy: shutting down"`)) != 1 {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
	for _, addr := range []string{listen, redirect} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("after the refused reload: %v", err)
			continue
		}
		ln.Close()
	}
	if got := reloads(t, reg, "failure"); got != 1 {
		t.Errorf(`wssproxy_config_reloads_total{result="failure"} = %v, want 1`, got)
	}
	if got := reloads(t, reg, "success"); got != 0 {
		t.Errorf(`wssproxy_config_reloads_total{result="success"} = %v, want 0`, got)
	}
}

// TestReloadAdminChangeWarns guards the warning that [admin] changes need a
// restart: a reload that changes [admin] listen logs it, one that does not
// stays quiet.
func TestReloadAdminChangeWarns(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	write := func(admin string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[admin]\nlisten = %q\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n", admin)), 0o600)
	}
	write("127.0.0.1:0")
	r, logs, reg := newRunner(t, cfg)
	const warning = "[admin] changes apply at the next start"
	r.reload(ctx) // returns when the reload is done
	if got := reloads(t, reg, "success"); got != 1 {
		t.Fatalf("reload: %v successes, want 1:\n%s", got, logs)
	}
	if strings.Contains(logs.String(), warning) {
		t.Errorf("warned with [admin] unchanged:\n%s", logs)
	}
	write(testutil.ClosedPort(t))
	r.reload(ctx)
	if got := reloads(t, reg, "success"); got != 2 {
		t.Fatalf("second reload: %v successes, want 2:\n%s", got, logs)
	}
	if !strings.Contains(logs.String(), warning) {
		t.Errorf("no warning with [admin] changed:\n%s", logs)
	}
}

// TestRefusedReloadLogsEveryError guards a refused SIGHUP in a real
// process: every problem -t reports (a value of the wrong type, an unknown
// key, a process key, a TLS key, a route) is logged, one line each with
// file, line and key, sorted by line; the running configuration stays.
func TestRefusedReloadLogsEveryError(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Context(t, 30*time.Second)
	backend := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	cfg := filepath.Join(t.TempDir(), "wssproxy.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/wss\"\nbackend = %q\n", backend)), 0o600)
	p := startProc(t, ctx, bin, "-config", cfg)
	os.WriteFile(cfg, []byte(`listen = 8443
log_level = "loud"
[admin]
listen = ""
[tls]
min_version = "1.0"
[[route]]
path = "/wss"
backend = "htp://127.0.0.1:8282"
idle_timeout = "10"
bakend = "ws://127.0.0.1:8282"
`), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.logs.Wait(t, ctx, `(?s)msg="reload refused: still running the previous configuration" errors=6.*route\[1\]\.bakend`)
	want := []string{
		cfg + `:1: listen: must be a string (in quotes), got the integer 8443`,
		cfg + `:2: log_level: must be debug, info, warn or error, got \"loud\"`,
		cfg + `:6: tls.min_version: TLS 1.0 is not offered`,
		cfg + `:9: route[1].backend: scheme must be ws, wss, http or https, got \"htp\"`,
		cfg + `:10: route[1].idle_timeout: \"10\" has no unit`,
		cfg + `:11: route[1].bakend: unknown key (did you mean \"backend\"?)`,
	}
	got := p.logs.Lines(`msg="reload refused" error=`)
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), p.logs)
	}
	for i, w := range want {
		if !strings.Contains(got[i], `error="`+w) {
			t.Errorf("line %d: %s\nwant error=%q…", i+1, got[i], w)
		}
	}
	client := insecureClient()
	defer client.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("after the refused reload: %v", err)
	}
	c.CloseNow()
}
