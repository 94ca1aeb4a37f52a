package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestPlainBackendNamed guards the 502 for a backend written wss:// that
// speaks ws://: the client is told the proxy's kind (backend-not-tls, so
// probe can say it), and the refusal's log line says the backend answered
// plain HTTP and which ws:// URL to write, not that it is unavailable.
func TestPlainBackendNamed(t *testing.T) {
	t.Parallel()
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/wss\"\nbackend = \"wss://%s\"\n", backend)), 0o600)
	logs, addr := startRun(t, "-config", cfg)
	ctx := testutil.Context(t, 10*time.Second)
	_, resp, err := websocket.Dial(ctx, "wss://"+addr+"/wss", &websocket.DialOptions{HTTPClient: insecureClient()})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Wssproxy-Error") != "backend-not-tls" {
		t.Fatalf("dial: %v, response %+v", err, resp)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	logs.Wait(t, wctx, `refused=backend-not-tls .*`+regexp.QuoteMeta(
		`tls: first record does not look like a TLS handshake: the backend answered plain HTTP: it speaks ws://, not wss:// (write it as ws://`+backend+`)`))
}
