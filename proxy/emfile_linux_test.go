//go:build linux

package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestOwnEMFILE guards issue 29's "the proxy's own EMFILE is never
// counted as a backend's failure": a backend dial that fails with
// "too many open files" (the open file limit lowered, in a child process,
// to the descriptors already open) is answered 503 out-of-descriptors,
// logged at error as the proxy's fault, and neither counted as a dial
// error nor taken as a failure towards max_fails: with two backends and
// max_fails 1, both stay in rotation and the next handshake is served.
// It used to be 502 "backend unavailable", a dial error for each backend
// tried, and both out of rotation.
func TestOwnEMFILE(t *testing.T) {
	const child = "WSSPROXY_TEST_OWN_EMFILE"
	if os.Getenv(child) == "" {
		t.Parallel() // the limit is the child's
		cmd := exec.Command(os.Args[0], "-test.run=^TestOwnEMFILE$", "-test.count=1")
		cmd.Env = append(os.Environ(), child+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	ctx := testutil.Context(t, 30*time.Second)
	a, b := echoBackend(t, echo.Options{}), echoBackend(t, echo.Options{})
	reg := prometheus.NewRegistry()
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backends: []string{a, b}}}},
		func(s *proxy.Server) { s.RegisterMetrics(reg) })

	cfg := e.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))

	// From here no descriptor can be opened: the lowest free one is the
	// limit.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	next := f.Fd()
	f.Close()
	low := lim
	low.Cur = uint64(next)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wss HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Wssproxy-Error") != "out-of-descriptors" {
		t.Errorf("handshake while out of descriptors: %d %q, want 503 out-of-descriptors", resp.StatusCode, resp.Header.Get("X-Wssproxy-Error"))
	}
	e.logs.Wait(t, ctx, `level=ERROR msg="backend dial failed: the proxy is out of file descriptors`)
	for _, name := range []string{a, b} {
		if !backendStatus(t, e.srv, name).Up {
			t.Errorf("%s out of rotation for the proxy's own EMFILE", name)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "wssproxy_backend_dial_errors_total" && len(mf.GetMetric()) > 0 {
			t.Errorf("dial errors counted against a backend: %v", mf.GetMetric())
		}
	}
	ws := e.mustDial(ctx, "/wss", nil)
	roundTrip(t, ctx, ws, websocket.MessageText, []byte("tom"))
}
