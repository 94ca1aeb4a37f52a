package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestCheckBinds guards -t's bind check: a listener whose port another
// process holds fails -t as it would fail starting, one line at the key
// that set it (with what names the holder); a port the running wssproxy
// holds itself (its admin listener says so) passes, as a reload keeps it.
func TestCheckBinds(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, port, _ := net.SplitHostPort(held.Addr().String())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[redirect]\nlisten = %q\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n", held.Addr())), 0o600)
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"-t", "-config", cfg}, &stdout, &stderr)
	want := fmt.Sprintf("%s:3: redirect.listen: listen tcp %s: bind: address already in use: another process listens on port %s (`ss -ltnp 'sport = :%s'` or `lsof -i :%s` names it)",
		cfg, held.Addr(), port, port, port)
	if err == nil || err.Error() != want || stdout.Len() > 0 {
		t.Errorf("-t with a busy port: %v, stdout %q\nwant: %s", err, stdout.String(), want)
	}

	// The same ports held by a wssproxy that is running this configuration.
	held.Close()
	running := filepath.Join(dir, "running.toml")
	os.WriteFile(running, []byte("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[redirect]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	logs, _ := startRun(t, "-config", running)
	ctx := testutil.Context(t, 10*time.Second)
	tlsAddr := logs.Wait(t, ctx, `msg=listening addr=(\S+)`)
	redirect := logs.Wait(t, ctx, `msg="redirecting to https" addr=(\S+)`)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	again := filepath.Join(dir, "again.toml")
	os.WriteFile(again, []byte(fmt.Sprintf("listen = %q\n[admin]\nlisten = %q\n[redirect]\nlisten = %q\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n", tlsAddr, admin, redirect)), 0o600)
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"-t", "-config", again}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "test is successful") || stderr.Len() > 0 {
		t.Errorf("-t beside the running wssproxy: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
}
