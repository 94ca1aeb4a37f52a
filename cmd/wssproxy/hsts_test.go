package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestHSTS guards [tls] hsts in a real process: the Strict-Transport-Security
// header is on every plain-HTTP response of the TLS listener (a backend's
// page, a static file, the proxy's own 404), not on a WebSocket's 101, and
// never on the plain-HTTP [redirect] listener (RFC 6797 §7.2); a reload
// (SIGHUP) changes it for new requests.
func TestHSTS(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := testutil.Context(t, 30*time.Second)
	dir := t.TempDir()
	static := filepath.Join(dir, "www")
	os.Mkdir(static, 0o755)
	os.WriteFile(filepath.Join(static, "a.txt"), []byte("a"), 0o644)
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	cfg := filepath.Join(dir, "wssproxy.toml")
	write := func(hsts string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"\"\n[tls]\nhsts = %q\n"+
			"[redirect]\nlisten = \"127.0.0.1:0\"\n"+
			"[[route]]\npath = \"/wss\"\nbackend = \"ws://%s\"\n[[route]]\npath = \"/files\"\nstatic = %q\nstrip_prefix = true\n",
			hsts, backend, static)), 0o600)
	}
	const first = "max-age=31536000; includeSubDomains"
	write(first)
	p := startProc(t, ctx, bin, "-config", cfg)
	redirect := p.logs.Wait(t, ctx, `redirecting to https" addr=(\S+)`)
	client := insecureClient()
	defer client.CloseIdleConnections()
	noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer noRedirects.CloseIdleConnections()
	get := func(c *http.Client, url string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	check := func(want string) {
		t.Helper()
		for _, tc := range []struct {
			name, url string
			status    int
		}{
			{"backend page", "https://" + p.addr + "/wss", 200},
			{"static file", "https://" + p.addr + "/files/a.txt", 200},
			{"static 404", "https://" + p.addr + "/files/none", 404},
			{"proxy's 404", "https://" + p.addr + "/nowhere", 404},
		} {
			resp := get(client, tc.url)
			if got := resp.Header.Values("Strict-Transport-Security"); resp.StatusCode != tc.status || len(got) != 1 || got[0] != want {
				t.Errorf("%s: %d, Strict-Transport-Security %q, want %d %q", tc.name, resp.StatusCode, got, tc.status, want)
			}
		}
		resp := get(noRedirects, "http://"+redirect+"/wss")
		if got := resp.Header.Get("Strict-Transport-Security"); resp.StatusCode != 308 || got != "" {
			t.Errorf("redirect: %d, Strict-Transport-Security %q: must not be sent over plain HTTP", resp.StatusCode, got)
		}
		c, resp, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		c.CloseNow()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("101: Strict-Transport-Security %q, want none (the 101 is the backend's)", got)
		}
	}
	check(first)

	write("max-age=600")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the reload's header", func() bool {
		return get(client, "https://"+p.addr+"/files/a.txt").Header.Get("Strict-Transport-Security") == "max-age=600"
	})
	check("max-age=600")
}
