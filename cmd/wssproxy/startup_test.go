package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestStartupWarnsUnreachableBackends guards the startup warning for a
// backend that is not running, for routes with backends as for routes
// with backend: each entry that refuses is named, a running one is not,
// and the route line says where it goes.
func TestStartupWarnsUnreachableBackends(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Context(t, 30*time.Second)
	live := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackends = [%q, %q]\n", live, dead+" weight=2")), 0o600)
	p := startProc(t, ctx, bin, "-config", cfg)
	p.logs.Wait(t, ctx, `msg="backend not reachable now; handshakes will get 502 until it is" backend=`+regexp.QuoteMeta(dead)+` `)
	p.logs.Wait(t, ctx, `msg=route n=1 host="" path=/wss to=`)
	if lines := p.logs.Lines("not reachable now", "backend="+live+" "); len(lines) != 0 { // Lines takes strings, not patterns
		t.Errorf("warned about the running backend: %q", lines)
	}
}
