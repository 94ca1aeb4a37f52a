package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestCloseSpread guards close_spread in a real process: 200 tunnels get
// their 1001 on SIGTERM spread over the window (first to last at least
// two thirds of it), not in one instant, and /readyz answers 503 from the
// drain's start while the tunnels are still closing.
func TestCloseSpread(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Deadline(t) // 200 dials from this process: beside a second copy of the suite, under -race, a minute was not always enough
	backend := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	cfg := filepath.Join(t.TempDir(), "c.toml")
	const spread = 1500 * time.Millisecond
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\nshutdown_timeout = \"20s\"\nclose_spread = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = %q\n",
		spread.String(), backend)), 0o600)
	p := startProc(t, ctx, bin, "-config", cfg)
	admin := p.logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	client := insecureClient()
	defer client.CloseIdleConnections()

	const n = 200
	closedAt := make([]time.Time, n)
	codes := make([]websocket.StatusCode, n)
	// Opened 50 at a time: one after another, they took most of the
	// test's time beside the other tests' goroutines in this process.
	conns := make([]*websocket.Conn, n)
	dialErrs := make([]error, n)
	opening := make(chan struct{}, 50)
	var dials sync.WaitGroup
	for i := range n {
		opening <- struct{}{}
		dials.Go(func() {
			defer func() { <-opening }()
			conns[i], _, dialErrs[i] = websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: client})
		})
	}
	dials.Wait()
	for _, c := range conns {
		if c != nil {
			defer c.CloseNow()
		}
	}
	for i, err := range dialErrs {
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			_, _, err := c.Read(ctx)
			closedAt[i], codes[i] = time.Now(), websocket.CloseStatus(err)
		})
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	// Until the signal is handled /readyz answers 200; from the drain's
	// first moment it must answer 503, until the admin listener closes
	// after the last tunnel. (Not the "stopped accepting" line: net/http
	// logs it from a goroutine of its own, and its open_tunnels may
	// already count a tunnel closed at the spread's start.)
	var status int
	var body string
	waitFor(t, ctx, "/readyz to change after SIGTERM", func() bool {
		status, body = get(t, "http://"+admin+"/readyz")
		return status != 200
	})
	if status != 503 || body != "not ready: draining\n" {
		t.Errorf("/readyz while draining: %d %q, want 503 draining", status, body)
	}
	wg.Wait()
	first, last := closedAt[0], closedAt[0]
	for i := range n {
		if codes[i] != websocket.StatusGoingAway {
			t.Fatalf("tunnel %d got %d, want 1001", i, codes[i])
		}
		if closedAt[i].After(last) {
			last = closedAt[i]
		}
	}
	for _, at := range closedAt {
		if at.Before(first) {
			first = at
		}
	}
	if got := last.Sub(first); got < spread*2/3 {
		t.Errorf("closes arrived within %v, want them spread over at least %v of the %v close_spread", got, spread*2/3, spread)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("process did not exit")
	}
}
