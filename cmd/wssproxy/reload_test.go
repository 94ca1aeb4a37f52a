package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

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
	testutil.CheckLeaks(t)
	bin := buildBinary(t)
	ctx := testutil.Context(t, 90*time.Second)
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

	const n = 500
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, err := dial(addr, "/wss")
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		defer c.CloseNow()
		conns[i] = c
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
	logs.Wait(t, ctx, `msg="configuration reloaded" routes=2`)
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
	logs.Wait(t, ctx, `msg=listening addr=`+newAddr)
	logs.Wait(t, ctx, `(?s)msg=listening addr=`+newAddr+`.*configuration reloaded`)
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
		if err := echoes(c, fmt.Sprint(i)); err != nil {
			t.Fatalf("tunnel %d after the reloads: %v", i, err)
		}
	}
	m := scrape(t, admin)
	if m[`wssproxy_config_reloads_total{result="success"}`] != "2" || m[`wssproxy_config_reloads_total{result="failure"}`] != "1" {
		t.Errorf("reload metrics: %v %v", m[`wssproxy_config_reloads_total{result="success"}`], m[`wssproxy_config_reloads_total{result="failure"}`])
	}
	t.Logf("%d new connections during reloads, none failed; %d tunnels kept", made.Load(), n)
}
