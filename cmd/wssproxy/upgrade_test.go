package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// startDetached runs bin like startProc, but with its stderr on a pipe of
// its own rather than one exec copies from: a process it starts (an
// upgrade's new process) inherits that pipe, and the old one's exit must
// not wait for the new one's. exited is closed when bin itself exits.
func startDetached(t *testing.T, ctx context.Context, bin string, args ...string) *proc {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(bin, args...), logs: &testutil.Logs{}, exited: make(chan struct{})}
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	p.outDone = make(chan struct{})
	go func() { // ends when every process holding pw has exited
		io.Copy(p.logs, pr)
		close(p.outDone)
	}()
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			quitForStacks(p.logs, p.cmd.Process.Pid)
			t.Errorf("wssproxy (pid %d) did not stop within 20 s of SIGTERM (SIGQUIT: its goroutines are in its stderr below)", p.cmd.Process.Pid)
			p.cmd.Process.Kill()
			<-p.exited
		}
		pr.Close()
		if t.Failed() {
			t.Logf("wssproxy's stderr (both processes of an upgrade):\n%s", p.logs)
		}
	})
	p.addr = p.logs.Wait(t, ctx, `msg=listening addr=(\S+)`)
	return p
}

// quitForStacks sends SIGQUIT to pid, a Go process whose stderr logs
// collects: the runtime prints every goroutine's stack there and exits,
// and the test's log shows it when the test fails. For a process that
// hung; the dump has no end marker, so this returns once the output has
// been still for half a second (at most 10 s).
func quitForStacks(logs *testutil.Logs, pid int) {
	before := len(logs.String())
	syscall.Kill(pid, syscall.SIGQUIT)
	last, still := before, time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := len(logs.String()); n != last {
			last, still = n, time.Now()
		} else if n > before && time.Since(still) > 500*time.Millisecond {
			return
		}
	}
}

// stopPID sends SIGTERM to a process this test did not start directly (an
// upgrade's new process, which holds the stderr pipe of p, started by
// startDetached), waits within ctx until it has exited, which the pipe's
// end tells, and checks that it stopped cleanly: it logged "stopped" (the
// old process, handing over, logs "stopped: handed over" instead).
func stopPID(t *testing.T, ctx context.Context, p *proc, pid int) {
	t.Helper()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.outDone:
	case <-ctx.Done():
		t.Fatalf("process %d still running after SIGTERM:\n%s", pid, p.logs)
	}
	if !regexp.MustCompile(`(?m)msg=stopped$`).MatchString(p.logs.String()) {
		t.Errorf("process %d exited without its \"stopped\" line:\n%s", pid, p.logs)
	}
}

// TestUpgrade guards binary upgrades in real processes:
//   - a new binary that fails to start (here one that exits at once) is
//     reported, and the old process keeps serving under its pid_file, its
//     admin listener too, whose socket stays non-blocking so that the next
//     upgrade's hand-over can close it;
//   - -s upgrade (SIGUSR2 through pid_file) under 1,000 tunnels echoing and a loop of new connections:
//     the new process takes over the listeners, the pid_file names it, not
//     one connection is refused and no tunnel fails; every old tunnel is
//     closed with 1012 Service Restart and reconnects to the new process;
//     the old process exits 0 once its last tunnel has ended.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	bin := ownBinary(t) // replaced below, as a package manager does
	good, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Deadline(t)
	backend := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "wssproxy.pid")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
pid_file = %q
upgrade_drain = "2s"
shutdown_timeout = "10s"
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backend = %q
`, pidFile, backend)), 0o600)
	p := startDetached(t, ctx, bin, "-config", cfg)
	oldPID := p.cmd.Process.Pid
	// Each dial on a connection of its own, as browsers open WebSockets: a
	// pooled connection that a parallel dial left idle, to the old process,
	// would be the client's race, not the proxy's.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	url := "wss://" + p.addr + "/wss"
	echoOnce := func(ctx context.Context, c *websocket.Conn, msg string) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != msg {
			err = fmt.Errorf("echo %q, sent %q", got, msg)
		}
		return err
	}
	dialEcho := func(ctx context.Context) error {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			return err
		}
		defer c.CloseNow()
		err = echoOnce(ctx, c, "tom")
		if err == nil {
			err = c.Close(websocket.StatusNormalClosure, "")
		}
		if websocket.CloseStatus(err) == websocket.StatusServiceRestart {
			err = nil // accepted by the old process just before the switch, then moved on
		}
		return err
	}

	// A broken new binary, put in place the way a package manager does.
	broken := filepath.Join(dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho 'not wssproxy' >&2\nexit 3\n"), 0o755)
	if err := os.Rename(broken, bin); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGUSR2)
	p.logs.Wait(t, ctx, `msg="upgrade failed; this process keeps serving" error="new process \d+ exited before it was ready: exit status 3; stopped its process group"`)
	if err := dialEcho(ctx); err != nil {
		t.Fatalf("after a failed upgrade: %v", err)
	}
	// The admin listener serves too. Its Accept then waits again, on a
	// socket the failed upgrade must have left non-blocking: in a blocking
	// accept(2), nothing but a connection would let the hand-over below
	// close it, and the old process would never exit.
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)+"/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("admin after a failed upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /healthz after a failed upgrade: %s", resp.Status)
	}
	if got, _ := os.ReadFile(pidFile); strings.TrimSpace(string(got)) != strconv.Itoa(oldPID) {
		t.Fatalf("pid_file holds %q after a failed upgrade, want %d", got, oldPID)
	}
	newBin := filepath.Join(dir, "new")
	os.WriteFile(newBin, good, 0o755)
	if err := os.Rename(newBin, bin); err != nil {
		t.Fatal(err)
	}

	// 1,000 tunnels echoing, each reconnecting when closed with 1012.
	const n = 1000
	var restarts, failures, loopOK, loopFailed atomic.Int64
	var firstFailure atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstFailure.CompareAndSwap(nil, err.Error())
	}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }() // on the way out of a Fatal
	opened := make(chan struct{}, n)
	allOpen := make(chan struct{}) // closed when every tunnel is open: then they echo
	// settled gets one value from each tunnel: once it has echoed through
	// the new process after its 1012, or when it has failed.
	settled := make(chan struct{}, n)
	// At most 50 handshakes at once, the opening dials and the reconnects
	// alike. The client's side of each (and the backend's: the echo
	// server) runs in this process, under the race detector when the suite
	// does: 1,000 at a time on a busy machine starve one another of CPU,
	// and some wait past read_header_timeout, which the proxy rightly
	// closes (the client sees EOF, or "broken pipe" on its next write), or
	// past handshake_timeout for the backend's answer (504). The 1012s
	// arrive over upgrade_drain, 2 s, so without this the reconnects came
	// nearly all at once.
	opening := make(chan struct{}, 50)
	dial := func() (*websocket.Conn, error) {
		select {
		case opening <- struct{}{}:
		case <-lctx.Done():
			return nil, lctx.Err()
		}
		defer func() { <-opening }()
		c, _, err := websocket.Dial(lctx, url, &websocket.DialOptions{HTTPClient: client})
		return c, err
	}
	for i := range n {
		wg.Go(func() {
			settle := sync.OnceFunc(func() { settled <- struct{}{} })
			defer settle()
			c, err := dial()
			opened <- struct{}{}
			select {
			case <-allOpen: // the echoes of the first would slow the last's handshakes
			case <-lctx.Done():
			}
			for reconnected := false; lctx.Err() == nil; {
				if err != nil {
					what := "dial"
					if reconnected {
						what = "reconnect"
					}
					fail(fmt.Errorf("tunnel %d %s: %w", i, what, err))
					return
				}
				err = echoOnce(lctx, c, "msg")
				switch {
				case lctx.Err() != nil:
				case err == nil:
					if reconnected {
						settle()
					}
					select {
					case <-lctx.Done():
					case <-time.After(200 * time.Millisecond): // busy, not flooding
					}
					continue
				case websocket.CloseStatus(err) == websocket.StatusServiceRestart && !reconnected:
					restarts.Add(1)
					c.CloseNow()
					reconnected = true
					c, err = dial()
					continue
				default:
					fail(fmt.Errorf("tunnel %d: %w", i, err))
				}
				break
			}
			if c != nil {
				c.CloseNow()
			}
		})
	}
	for range n {
		<-opened
	}
	close(allOpen)
	wg.Go(func() { // new connections all the while
		for lctx.Err() == nil {
			if err := dialEcho(lctx); err != nil && lctx.Err() == nil {
				loopFailed.Add(1)
				firstFailure.CompareAndSwap(nil, "connect loop: "+err.Error())
			} else if err == nil {
				loopOK.Add(1)
			}
		}
	})

	if out, err := exec.Command(bin, "-s", "upgrade", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("-s upgrade: %v\n%s", err, out)
	}
	newPID, _ := strconv.Atoi(p.logs.Wait(t, ctx, `msg="upgrade: new process ready; this one stops accepting and drains" new_pid=(\d+)`))
	defer stopPID(t, ctx, p, newPID)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("old process: %v", p.err)
		}
	case <-ctx.Done():
		quitForStacks(p.logs, oldPID)
		t.Fatalf("old process (pid %d) did not exit (%d of %d tunnels had moved; SIGQUIT: its goroutines are in its stderr below)",
			oldPID, restarts.Load(), n)
	}
	if got, _ := os.ReadFile(pidFile); strings.TrimSpace(string(got)) != strconv.Itoa(newPID) {
		t.Errorf("pid_file holds %q, want the new process %d", bytes.TrimSpace(got), newPID)
	}
	// Every tunnel has had its 1012 once the old process is gone, but a
	// tunnel's goroutine here may not have read it yet (this process, the
	// clients and the backend, is the busiest of the test's): the load
	// stops once each has reconnected and echoed, or failed.
	for k := range n {
		select {
		case <-settled:
		case <-ctx.Done():
			t.Fatalf("%d of %d tunnels reconnected (or failed) after the upgrade; %d saw a 1012", k, n, restarts.Load())
		}
	}
	if err := dialEcho(ctx); err != nil {
		t.Errorf("through the new process: %v", err)
	}
	stopLoad()
	wg.Wait()
	if f := failures.Load() + loopFailed.Load(); f != 0 {
		t.Errorf("%d tunnels and %d new connections failed, first: %v", failures.Load(), loopFailed.Load(), firstFailure.Load())
	}
	if got := restarts.Load(); got != n {
		t.Errorf("%d of %d tunnels were closed with 1012 and reconnected", got, n)
	}
	if loopOK.Load() == 0 {
		t.Error("the connect loop made no connection")
	}
	t.Logf("%d tunnels moved, %d new connections during the upgrade", restarts.Load(), loopOK.Load())
}

// TestUpgradeListenerBusy guards an upgrade whose new configuration names
// a listener that cannot be opened (its port taken by another program):
// the new process fails as a start would, never says ready, and the old
// one keeps serving, /healthz on its admin listener included, under its
// pid_file. For admin.listen, the new process used to log the busy port
// and say ready anyway: the old one handed over, and afterwards nothing
// answered /healthz (a Kubernetes liveness probe then restarts the pod,
// dropping every tunnel).
func TestUpgradeListenerBusy(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"admin", "redirect"} {
		t.Run(key+".listen", func(t *testing.T) {
			t.Parallel()
			bin := ownBinary(t)
			ctx := testutil.Deadline(t)
			busy := testutil.Listen(t) // another program's port
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "wssproxy.pid")
			cfg := filepath.Join(dir, "c.toml")
			write := func(admin, redirect string) {
				os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
pid_file = %q
[redirect]
listen = %q
[admin]
listen = %q
[[route]]
path = "/wss"
backend = "ws://127.0.0.1:8282"
`, pidFile, redirect, admin)), 0o600)
			}
			write("127.0.0.1:0", "127.0.0.1:0")
			p := startDetached(t, ctx, bin, "-config", cfg)
			oldPID := p.cmd.Process.Pid
			admin := p.logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
			if key == "admin" {
				write(busy.Addr().String(), "127.0.0.1:0")
			} else {
				write("127.0.0.1:0", busy.Addr().String())
			}
			p.cmd.Process.Signal(syscall.SIGUSR2)
			outcome := p.logs.Wait(t, ctx, `(upgrade failed; this process keeps serving|upgrade: new process ready)`)
			if outcome != "upgrade failed; this process keeps serving" {
				if pid, err := strconv.Atoi(p.logs.Wait(t, ctx, `new_pid=(\d+)`)); err == nil {
					defer stopPID(t, ctx, p, pid)
				}
				t.Fatalf("the new process said it was ready without the %s.listen it names (%s busy):\n%s", key, busy.Addr(), p.logs)
			}
			if !regexp.MustCompile(`exited before it was ready: exit status 1`).MatchString(p.logs.String()) {
				t.Errorf("want the new process to exit 1:\n%s", p.logs)
			}
			code, body := get(t, "http://"+admin+"/healthz")
			if code != http.StatusOK {
				t.Errorf("old process's /healthz after the failed upgrade: %d %q", code, body)
			}
			if got, _ := os.ReadFile(pidFile); strings.TrimSpace(string(got)) != strconv.Itoa(oldPID) {
				t.Errorf("pid_file holds %q after a failed upgrade, want %d", got, oldPID)
			}
		})
	}
}
