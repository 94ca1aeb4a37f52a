package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// startRunner runs wssproxy with args as run does, with the redirect and
// admin servers' timeouts set, until the test ends.
func startRunner(t *testing.T, timeouts sideTimeouts, args ...string) *testutil.Logs {
	t.Helper()
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fc := loadCompiled(t, o)
	logs := &testutil.Logs{}
	r := &runner{o: o, errc: make(chan error, 1), timeouts: timeouts}
	r.log = newLogger(fc.LogFormat, logs, &r.level)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := r.serve(ctx, fc)
		r.bg.Wait()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return logs
}

// closedByServer reports whether the server ends c (the read sees the end
// of the stream) before the test's deadline.
func closedByServer(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestSideServersCloseIdleConnections guards the redirect and admin
// servers' timeouts: a keep-alive connection left idle after a request is
// closed by the server (it used to stay open for ever).
func TestSideServersCloseIdleConnections(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 20*time.Second)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(`listen = "127.0.0.1:0"
[redirect]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backend = "ws://127.0.0.1:8282"
`), 0o600)
	logs := startRunner(t, sideTimeouts{idle: 200 * time.Millisecond}, "-config", cfg)
	for _, tc := range []struct {
		name, logRe, path string
		status            int
	}{
		{"redirect", `redirecting to https" addr=(\S+)`, "/x", http.StatusPermanentRedirect},
		{"admin", `msg="admin listening" addr=(\S+)`, "/healthz", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := logs.Wait(t, ctx, tc.logRe)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", tc.path)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.status || resp.Close {
				t.Fatalf("got %d close=%v, want %d on a kept connection", resp.StatusCode, resp.Close, tc.status)
			}
			if !closedByServer(c, br) {
				t.Error("idle keep-alive connection still open")
			}
		})
	}
}

// TestClientConnectionBound guards max_client_connections: connections
// over the bound are closed at once, on the TLS and the redirect listener
// alike (they share it), while an open tunnel goes on echoing and the
// admin listener, outside the bound, still serves /healthz and /metrics;
// the refusals are counted per listener and logged at warn, a line per
// burst rather than per connection; and closed connections give their
// places back.
func TestClientConnectionBound(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 30*time.Second)
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	cert, _ := testutil.Cert(t, "localhost")
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
	const bound, over = 20, 5
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
max_client_connections = %d
read_header_timeout = "1m"
[redirect]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[tls]
cert = %q
key = %q
[[route]]
path = "/wss"
backend = "ws://%s"
`, bound, certFile, keyFile, backend)), 0o600)
	logs, addr := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	redirect := logs.Wait(t, ctx, `redirecting to https" addr=(\S+)`)

	client := insecureClient()
	defer client.CloseIdleConnections()
	tunnel, _, err := websocket.Dial(ctx, "wss://"+addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	defer tunnel.CloseNow()
	echoes := func() {
		t.Helper()
		if err := tunnel.Write(ctx, websocket.MessageText, []byte("tom")); err != nil {
			t.Fatalf("tunnel write: %v", err)
		}
		if _, msg, err := tunnel.Read(ctx); err != nil || string(msg) != "tom" {
			t.Fatalf("tunnel echo: %q %v", msg, err)
		}
	}
	echoes()

	dial := func(addr string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	idle := make([]net.Conn, 0, bound-1)
	for range bound - 1 { // the tunnel is one
		c, _ := dial(addr)
		idle = append(idle, c)
	}
	waitMetric(t, ctx, admin, "wssproxy_client_connections", strconv.Itoa(bound))
	for i := range over {
		c, br := dial(addr)
		if !closedByServer(c, br) {
			t.Fatalf("connection %d over the bound kept open", i+1)
		}
	}
	if c, br := dial(redirect); !closedByServer(c, br) {
		t.Fatal("redirect connection over the shared bound kept open")
	}
	echoes()
	if code, body := get(t, "http://"+admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz with the bound reached: %d %q", code, body)
	}
	m := scrape(t, admin)
	for k, want := range map[string]string{
		`wssproxy_connections_refused_total{listener="tls"}`:      strconv.Itoa(over),
		`wssproxy_connections_refused_total{listener="redirect"}`: "1",
		`wssproxy_client_connections`:                             strconv.Itoa(bound),
	} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}

	// The refusals of a burst are summed in one line (or a few, if the
	// burst spans a second), never a line each.
	line := regexp.MustCompile(`level=WARN msg="connections refused: over the connection bound" listener=tls refused=(\d+)`)
	for {
		var n, lines int
		for _, m := range line.FindAllStringSubmatch(logs.String(), -1) {
			k, _ := strconv.Atoi(m[1])
			n += k
			lines++
		}
		if n == over {
			if lines >= over {
				t.Errorf("%d warn lines for %d refusals", lines, over)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("refusals not logged at warn (%d of %d):\n%s", n, over, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}

	for _, c := range idle {
		c.Close()
	}
	waitMetric(t, ctx, admin, "wssproxy_client_connections", "1")
	again, _, err := websocket.Dial(ctx, "wss://"+addr+"/wss", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial after the bound freed: %v", err)
	}
	again.CloseNow()
}

// TestAdminReserveShared guards the admin listener's own reserve of
// connections against one address: with more keep-alive connections held
// idle from 127.0.0.1 than the whole reserve, /metrics from another
// loopback address (127.0.0.2) is still answered, as each address gets a
// share of the reserve and the connections over it are closed at once.
// The reserve used to go to the first 32 connections, whoever held them:
// 32 idle ones from one address made /metrics fail for everybody until
// their idle timeout (1 min) ended them.
func TestAdminReserveShared(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 30*time.Second)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(`listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backend = "ws://127.0.0.1:8282"
`), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)

	// get asks for path on a new connection from the local address from,
	// and keeps the connection when the server does: true when answered
	// 200.
	get := func(from, path string) bool {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.DialContext(ctx, "tcp", admin)
		if err != nil {
			t.Skipf("no connection from %s (a loopback address other than 127.0.0.1 is Linux's): %v", from, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return false // closed at accept
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}
	held := 0
	for range adminConnections + 8 {
		if get("127.0.0.1", "/healthz") {
			held++
		}
	}
	if held >= adminConnections {
		t.Errorf("one address holds %d idle connections: all of the admin listener's %d", held, adminConnections)
	}
	if !get("127.0.0.2", "/metrics") {
		t.Fatalf("/metrics from 127.0.0.2 not answered while 127.0.0.1 holds %d idle connections", held)
	}
	t.Logf("127.0.0.1 kept %d of %d connections; 127.0.0.2 answered", held, adminConnections+8)
}
