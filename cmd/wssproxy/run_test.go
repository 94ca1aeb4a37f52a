package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// The tests here that run wssproxy as a process call t.Parallel: each has
// its own ports, files and process, and spends most of its time waiting on
// it; startProc's cleanup checks that the process stops cleanly. Those
// that serve from this process (startRun, startRunner, newRunner) stay
// serial, for testutil.CheckLeaks, which counts the whole process's
// goroutines and files; they take well under a second each. Those that
// call run only to check a configuration or flags run in parallel. Tests
// that set environment variables or change directory (t.Setenv, t.Chdir)
// are serial, as the testing package requires.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if built.dir != "" {
			os.RemoveAll(built.dir)
		}
		os.Exit(code)
	}))
}

// startRun runs run(args) in the background until the test ends and
// returns its log and the TLS address it listens on (the "listening"
// line is the only place a port-0 address is published). When the test
// ends, run must return within 20 s of its context ending, without error.
func startRun(t *testing.T, args ...string) (*testutil.Logs, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.Logs{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("run did not return within 20 s of its context ending:\n%s", logs)
		}
	})
	wctx := testutil.Context(t, 10*time.Second)
	addr := logs.Wait(t, wctx, `msg=listening addr=(\S+)`)
	return logs, addr
}

func insecureClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// TestDemo guards the README's quick start: -demo serves the test page
// and answers "tom" through the whole path, with nothing else running.
func TestDemo(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	logs, addr := startRun(t, "-demo", "-listen", "127.0.0.1:0", "-demo-backend", "127.0.0.1:0")
	client := insecureClient()
	defer client.CloseIdleConnections()

	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"wss://" + location.host + "/wss"`, `ws.send("tom")`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("demo page lacks %s", want)
		}
	}
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("tom"))
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != "tom" {
		t.Fatalf("reply %q, %v", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	// The route and "demo ready" lines are written after the listener
	// opens, so they may come after the exchange above: wait for them.
	for _, want := range []string{"fingerprint_sha256=", "path=/wss to=ws://127.0.0.1:", "demo ready"} {
		logs.Wait(t, ctx, regexp.QuoteMeta(want))
	}
}

// TestDefaultCertificate guards the embedded default's certificate: ECDSA
// P-256, for localhost and the loopback addresses, TLS 1.2 at least.
func TestDefaultCertificate(t *testing.T) {
	testutil.CheckLeaks(t)
	_, addr := startRun(t, "-listen", "127.0.0.1:0")
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if leaf.PublicKeyAlgorithm.String() != "ECDSA" || leaf.VerifyHostname("localhost") != nil ||
		leaf.VerifyHostname("127.0.0.1") != nil || leaf.VerifyHostname("::1") != nil {
		t.Errorf("certificate: %v %v %v", leaf.PublicKeyAlgorithm, leaf.DNSNames, leaf.IPAddresses)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
}

// TestRedirect guards [redirect]: every plain-HTTP request gets a 308 to the
// same host and URI on the TLS port.
func TestRedirect(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg := filepath.Join(t.TempDir(), "r.toml")
	os.WriteFile(cfg, []byte("listen = \"127.0.0.1:0\"\n[redirect]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	logs, addr := startRun(t, "-config", cfg)
	raddr := logs.Wait(t, testutil.Context(t, 5*time.Second), `redirecting to https" addr=(\S+)`)
	_, port, _ := net.SplitHostPort(addr)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+raddr+"/wss/room?x=1", nil)
	req.Host = "chat.example.com"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://chat.example.com:" + port + "/wss/room?x=1"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("got %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// TestFlagErrors guards that contradictory or incomplete flags are refused
// before anything starts.
func TestFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-demo", "-config", "x.toml"}, "-demo runs the embedded default"},
		{[]string{"-listen", "443"}, `-listen: listen: must be host:port or :port, like ":443", got "443"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-config", "/nonexistent.toml"}, "read config: open /nonexistent.toml"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestSignals builds the binary and guards SIGTERM in a real process: it
// stops accepting and sends open tunnels 1001 Going Away; a client that
// answers lets the process exit 0 at once, and one that does not is cut
// off at shutdown_timeout, after which the process exits 0 too.
func TestSignals(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	backend := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	for _, tc := range []struct {
		name    string
		answers bool
	}{
		{"client answers the close", true},
		{"client does not answer before shutdown_timeout", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			cfg := filepath.Join(t.TempDir(), "c.toml")
			timeout := "20s" // far beyond how long an answering client needs
			if !tc.answers {
				timeout = "300ms"
			}
			os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\nshutdown_timeout = %q\n[[route]]\npath = \"/wss\"\nbackend = %q\n", timeout, backend)), 0o600)
			p := startProc(t, ctx, bin, "-config", cfg)
			cmd, logs, addr := p.cmd, p.logs, p.addr
			c := p.dialWSS(t, ctx)
			c.Write(ctx, websocket.MessageText, []byte("tom"))
			if _, got, err := c.Read(ctx); err != nil || string(got) != "tom" {
				t.Fatalf("echo: %q %v", got, err)
			}

			cmd.Process.Signal(syscall.SIGTERM)
			logs.Wait(t, ctx, `msg="stopped accepting" open_tunnels=1`)
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Error("new connection accepted after SIGTERM")
			}
			if tc.answers {
				// Read answers the close frame, as browsers do.
				if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
					t.Fatalf("after SIGTERM: %v, want 1001", err)
				}
			}
			select {
			case <-p.exited:
				if p.err != nil {
					t.Fatalf("exit: %v\n%s", p.err, logs)
				}
			case <-ctx.Done():
				t.Fatalf("process did not exit:\n%s", logs)
			}
			if !tc.answers { // the close frame was sent all the same
				if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
					t.Fatalf("after SIGTERM: %v, want 1001", err)
				}
			}
			if !strings.Contains(logs.String(), "msg=stopped") {
				t.Errorf("log:\n%s", logs)
			}
		})
	}
}

// TestCertificateWarnings guards the startup warnings: a certificate that
// expires soon (with days left), and a route host no certificate covers.
func TestCertificateWarnings(t *testing.T) {
	testutil.CheckLeaks(t)
	cert, err := tlsconf.SelfSigned([]string{"chat.example.test"}, 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
[tls]
cert = %q
key = %q
[[route]]
host = "chat.example.test"
path = "/wss"
backend = "ws://127.0.0.1:8282"
[[route]]
host = "game.example.test"
path = "/wss"
backend = "ws://127.0.0.1:8282"
`, certFile, keyFile)), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	ctx := testutil.Context(t, 10*time.Second)
	logs.Wait(t, ctx, `level=WARN msg="certificate expires in 9 days`)
	logs.Wait(t, ctx, `level=WARN msg="no certificate covers this route's host: clients will see a name mismatch" route=2 host=game.example.test`)
	if strings.Contains(logs.String(), "host=chat.example.test\n") {
		t.Errorf("warned about a covered host:\n%s", logs)
	}
}

// proc is a wssproxy process a test started, listening on addr.
type proc struct {
	cmd    *exec.Cmd
	logs   *testutil.Logs
	addr   string
	exited chan struct{} // closed when it has exited, with err
	err    error
	// outDone, for a process whose stderr is a pipe (startDetached), is
	// closed when every process holding the pipe has exited.
	outDone chan struct{}
}

// startProc runs bin with args, waits until it listens, and stops it (by
// PID) when the test ends.
func startProc(t *testing.T, ctx context.Context, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), logs: &testutil.Logs{}}
	p.cmd.Stderr = p.logs
	p.start(t)
	p.addr = p.logs.Wait(t, ctx, `msg=listening addr=(\S+)`)
	return p
}

// start starts p.cmd and, when the test ends, stops it with SIGTERM: this
// is what the process tests check instead of testutil.CheckLeaks (which
// only serial tests may use). A process still running 20 s after
// its SIGTERM, or that exits with an error, fails the test; a hung one
// prints its goroutines (SIGQUIT) into p.logs first.
func (p *proc) start(t *testing.T) {
	t.Helper()
	p.exited = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return // exited already: the test has looked at how
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("wssproxy (pid %d) on SIGTERM at the test's end: %v\n%s", p.cmd.Process.Pid, p.err, p.logs)
			}
		case <-time.After(20 * time.Second):
			quitForStacks(p.logs, p.cmd.Process.Pid)
			t.Errorf("wssproxy (pid %d) did not stop within 20 s of SIGTERM (SIGQUIT: its goroutines are in its stderr below):\n%s", p.cmd.Process.Pid, p.logs)
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// dialWSS opens a WebSocket to the process's /wss, not checking its
// certificate, and closes it when the test ends.
func (p *proc) dialWSS(t *testing.T, ctx context.Context) *websocket.Conn {
	t.Helper()
	client := insecureClient()
	t.Cleanup(client.CloseIdleConnections)
	c, _, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// built is the wssproxy binary the process tests run: go build links it
// anew at every call (seconds, under load), so it is built once per run of
// this package, into a directory TestMain removes.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

// buildBinary returns the shared wssproxy binary, built from this package.
// A test that changes the file or its directory uses ownBinary instead.
func buildBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "wssproxy-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "wssproxy")
		if out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// ownBinary copies the shared binary into the test's temporary directory,
// for a test that replaces the file (an upgrade) or opens up its
// directory's permissions.
func ownBinary(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(buildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "wssproxy")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestSIGHUPReloadsCertificates guards SIGHUP in a real process: the
// certificate files are re-read and new handshakes get the new certificate,
// while an open tunnel stays up.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Context(t, 30*time.Second)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(cert *tls.Certificate) {
		c, k := testutil.WriteKeyPair(t, cert)
		os.Rename(k, keyFile)
		os.Rename(c, certFile)
	}
	first, _ := testutil.Cert(t)
	install(first)
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = %q\nkey = %q\n[[route]]\npath = \"/wss\"\nbackend = \"ws://%s\"\n",
		certFile, keyFile, testutil.Serve(t, echo.Handler(echo.Options{})))), 0o600)
	p := startProc(t, ctx, bin, "-config", cfg)
	cmd, logs, addr := p.cmd, p.logs, p.addr
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	c := p.dialWSS(t, ctx)

	// A reload is done when the admin endpoint counts it.
	const reloaded = `wssproxy_config_reloads_total{result="success"}`
	cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(t, ctx, admin, reloaded, "1")
	next, _ := testutil.Cert(t)
	install(next)
	cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(t, ctx, admin, reloaded, "2")
	// The log comes through a pipe, so it may be behind the metric.
	logs.Wait(t, ctx, `(?s)certificates reloaded.*certificates reloaded`)
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if !conn.ConnectionState().PeerCertificates[0].Equal(next.Leaf) {
		t.Error("new handshakes do not get the new certificate")
	}
	c.Write(ctx, websocket.MessageText, []byte("tom"))
	if _, got, err := c.Read(ctx); err != nil || string(got) != "tom" {
		t.Fatalf("tunnel after SIGHUP: %q %v", got, err)
	}
}

// TestLogFileReopen guards log_file with log_format = "json" in a real
// process: lines are JSON in the file, and after logrotate's move SIGUSR1
// makes the process write a new file at the configured path.
func TestLogFileReopen(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Context(t, 30*time.Second)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "wssproxy.log")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_file = %q\n[[route]]\npath = \"/wss\"\nbackend = \"ws://%s\"\n",
		logPath, testutil.Serve(t, echo.Handler(echo.Options{})))), 0o600)
	p := &proc{cmd: exec.Command(bin, "-config", cfg), logs: &testutil.Logs{}}
	p.cmd.Stderr = p.logs // empty unless it fails before opening log_file
	p.start(t)
	// waitFile waits until the file at path has a JSON line with msg.
	waitFile := func(path, msg string) map[string]any {
		t.Helper()
		for {
			data, _ := os.ReadFile(path)
			for _, l := range strings.Split(string(data), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
					return m
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s never logged %q:\n%s", path, msg, data)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	addr := waitFile(logPath, "listening")["addr"].(string)
	os.Rename(logPath, logPath+".1")
	p.cmd.Process.Signal(syscall.SIGUSR1)
	waitFile(logPath, "SIGUSR1: log file reopened")
	client := insecureClient()
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/wss/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if line := waitFile(logPath, "request"); line["path"] != "/wss/page" {
		t.Errorf("access line in the new file: %v", line)
	}
	if data, _ := os.ReadFile(logPath + ".1"); strings.Contains(string(data), "/wss/page") {
		t.Error("the rotated file got lines after SIGUSR1")
	}
}
