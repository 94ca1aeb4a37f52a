package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// scrape returns the admin endpoint's metrics as name{labels} → value.
func scrape(t *testing.T, admin string) map[string]string {
	t.Helper()
	resp, err := scrapeClient.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}

// scrapeClient bounds a scrape: an admin endpoint that stops answering
// fails the test instead of hanging it. It keeps no idle connection from
// one test to the next.
var scrapeClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitMetric waits until the admin endpoint's metric name (with its
// labels, as scrape keys them) reads want, or fails the test when ctx
// ends. A metric sends no event when it changes, so it is read every
// 10 ms.
func waitMetric(t *testing.T, ctx context.Context, admin, name, want string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, ok := scrape(t, admin)[name]
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			if !ok {
				got = "absent"
			}
			t.Fatalf("%s never read %s (last %s)", name, want, got)
		case <-tick.C:
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := scrapeClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdmin guards the admin listener: metric values after known traffic
// (open and ended tunnels with reasons, bytes each way, refusals, dial
// errors, certificate expiry, reloads), /healthz, /readyz flipping when the
// backend stops, and the status page.
func TestAdmin(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 20*time.Second)
	bln := testutil.Listen(t)
	bsrv := &http.Server{Handler: echo.Handler(echo.Options{})}
	var wg sync.WaitGroup
	wg.Go(func() { bsrv.Serve(bln) })
	defer func() { bsrv.Close(); wg.Wait() }()
	cert, _ := testutil.Cert(t, "localhost")
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[tls]
cert = %q
key = %q
[[route]]
path = "/wss"
backend = "ws://%s"
[[route]]
path = "/down"
backend = "ws://%s"
`, certFile, keyFile, bln.Addr(), testutil.ClosedPort(t))), 0o600)
	logs, addr := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)

	client := insecureClient()
	defer client.CloseIdleConnections()
	dial := func(path string) (*websocket.Conn, error) {
		c, _, err := websocket.Dial(ctx, "wss://"+addr+path, &websocket.DialOptions{HTTPClient: client})
		return c, err
	}
	kept, err := dial("/wss")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.CloseNow()
	closed, err := dial("/wss")
	if err != nil {
		t.Fatal(err)
	}
	closed.Write(ctx, websocket.MessageText, []byte("hello")) // 2+4+5 bytes in, 2+5 out
	closed.Read(ctx)
	closed.Close(websocket.StatusNormalClosure, "") // 2+4+2 in, 2+2 out
	// The proxy counts a tunnel's end, then takes it off the open gauge.
	waitMetric(t, ctx, admin, `wssproxy_tunnels_ended_total{reason="client_close",route="route[1] /wss"}`, "1")
	waitMetric(t, ctx, admin, `wssproxy_tunnels_open{route="route[1] /wss"}`, "1")
	if _, err := dial("/down"); err == nil {
		t.Fatal("/down connected")
	}
	if _, err := dial("/nowhere"); err == nil {
		t.Fatal("/nowhere connected")
	}

	// A client offering only TLS 1.0 fails the handshake: counted by reason.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}); err == nil {
		c.Close()
		t.Fatal("TLS 1.0 accepted")
	}
	// net/http logs (and so counts) the failure just after the client sees it.
	waitMetric(t, ctx, admin, `wssproxy_tls_handshake_errors_total{reason="protocol_version"}`, "1")
	m := scrape(t, admin)
	for k, want := range map[string]string{
		`wssproxy_tunnels_open{route="route[1] /wss"}`:                                          "1",
		`wssproxy_tunnels_ended_total{reason="client_close",route="route[1] /wss"}`:             "1",
		`wssproxy_tunnel_bytes_total{direction="in",route="route[1] /wss"}`:                     "19",
		`wssproxy_tunnel_bytes_total{direction="out",route="route[1] /wss"}`:                    "11",
		`wssproxy_requests_refused_total{kind="no-route"}`:                                      "1",
		`wssproxy_requests_refused_total{kind="backend-dial"}`:                                  "1",
		`wssproxy_tls_handshake_errors_total{reason="protocol_version"}`:                        "1",
		`wssproxy_handshake_duration_seconds_count{route="route[1] /wss"}`:                      "2",
		`wssproxy_backend_up{backend="ws://` + bln.Addr().String() + `",route="route[1] /wss"}`: "1",
	} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}
	if m["go_gc_heap_live_bytes"] == "" {
		t.Error("no go_gc_heap_live_bytes (the heap after the last GC)")
	}
	var expiry float64
	fmt.Sscan(m[`wssproxy_certificate_expiry_timestamp_seconds{host="localhost"}`], &expiry)
	if int64(expiry) != cert.Leaf.NotAfter.Unix() {
		t.Errorf("certificate expiry %v, want %d", expiry, cert.Leaf.NotAfter.Unix())
	}
	dialErrs := 0
	for k := range m {
		if strings.HasPrefix(k, "wssproxy_backend_dial_errors_total{") {
			dialErrs++
		}
	}
	if dialErrs != 1 {
		t.Errorf("dial error series: %d, want 1", dialErrs)
	}

	if code, body := get(t, "http://"+admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, "http://"+admin+"/readyz"); code != 503 || !strings.Contains(body, "route[2] /down: no backend accepts connections") {
		t.Errorf("/readyz with /down's backend down: %d %q", code, body)
	}
	code, page := get(t, "http://"+admin+"/")
	for _, want := range []string{"route[1] /wss", "ws://" + bln.Addr().String() + " up (1 open)", "localhost", "<meta http-equiv=\"refresh\""} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	bln.Close() // the /wss backend stops accepting too
	if code, body := get(t, "http://"+admin+"/readyz"); code != 503 || !strings.Contains(body, "route[1] /wss") {
		t.Errorf("/readyz after the backend stopped: %d %q", code, body)
	}
}

// TestAdminLoopbackOnly guards that the admin listener refuses a
// non-loopback address unless allow_remote says so.
func TestAdminLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		admin string
		ok    bool
	}{
		{"listen = \"0.0.0.0:9090\"", false},
		{"listen = \":9090\"", false},
		{"listen = \"192.0.2.1:9090\"", false},
		{"listen = \"0.0.0.0:9090\"\nallow_remote = true", true},
		{"listen = \"[::1]:9090\"", true},
		{"listen = \"localhost:9090\"", true},
		{"listen = \"\"", true},
	} {
		cfg := filepath.Join(t.TempDir(), "c.toml")
		os.WriteFile(cfg, []byte("[admin]\n"+tc.admin+"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
		err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", cfg}, io.Discard, io.Discard)
		if (err == nil) != tc.ok || (!tc.ok && !strings.Contains(err.Error(), "admin.listen: ")) {
			t.Errorf("%s: %v", tc.admin, err)
		}
	}
}

// hangingAddr returns a loopback address whose listener never accepts and
// whose backlog is full: a dial to it hangs until its deadline.
func hangingAddr(t *testing.T) string {
	t.Helper()
	syscall.ForkLock.RLock() // no SOCK_CLOEXEC on macOS: close-on-exec before a test starts a process
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // a queue of one
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 8 { // fill the queue: until a connection is not completed
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("the backlog of %s never filled", addr)
	return ""
}

// TestReadyzBounded guards /readyz against backends that never answer:
// with two routes whose backends hang (a dial to them waits for the
// kernel's connect timeout, minutes), /readyz still answers, 503 naming
// both, because it gives its dials admin.ReadyTimeout, which is under the 1 s a
// kubelet's probe waits by default. The bound is checked as that constant,
// not as 1 s timed here: this process serves /readyz too, under the race
// detector, and on a loaded machine the 200 ms left over were not always
// enough.
func TestReadyzBounded(t *testing.T) {
	testutil.CheckLeaks(t)
	if admin.ReadyTimeout >= time.Second {
		t.Errorf("admin.ReadyTimeout %v: /readyz would not answer within a kubelet's 1 s probe", admin.ReadyTimeout)
	}
	ctx := testutil.Context(t, 20*time.Second) // far less than a hanging dial's minutes
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/a"
backend = "ws://%s"
[[route]]
path = "/b"
backend = "ws://%s"
`, hangingAddr(t), hangingAddr(t))), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("/readyz did not answer while the backends hang: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "route[1] /a") || !strings.Contains(string(body), "route[2] /b") {
		t.Errorf("/readyz: %d %q, want 503 naming both routes", resp.StatusCode, body)
	}
}

// TestAdminHost guards the admin listener against DNS rebinding: requests
// whose Host is an IP address or localhost are served, any other name gets
// 421 Misdirected Request.
func TestAdminHost(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 10*time.Second)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	_, port, _ := net.SplitHostPort(admin)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		name, host string
		want       int
	}{
		{"listen address", admin, http.StatusOK},
		{"localhost", "localhost:" + port, http.StatusOK},
		{"localhost without port", "localhost", http.StatusOK},
		{"localhost with a dot", "LOCALHOST.:" + port, http.StatusOK},
		{"IPv6 loopback", "[::1]:" + port, http.StatusOK},
		{"another IP address", "192.0.2.7:" + port, http.StatusOK},
		{"rebound name", "evil.example", http.StatusMisdirectedRequest},
		{"rebound name with port", "evil.example:" + port, http.StatusMisdirectedRequest},
		{"name under localhost's IP", "127.0.0.1.nip.io:" + port, http.StatusMisdirectedRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/healthz", "/metrics", "/"} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
				req.Host = tc.host
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("GET %s with Host %q: %d, want %d", path, tc.host, resp.StatusCode, tc.want)
				}
			}
		})
	}
}

// TestAdminBasicAuth guards admin basic_auth: a file htpasswd -B wrote
// guards every admin endpoint but /healthz (401 with WWW-Authenticate:
// Basic without one of its users; the tunnel API's GETs and its POST
// close, and the dashboard's JSON, included), and lets admin.listen go beyond
// loopback, which -t otherwise refuses.
func TestAdminBasicAuth(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("htpasswd")
	testutil.Need(t, err == nil, "htpasswd (Debian's apache2-utils) is not installed")
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin.htpasswd")
	if out, err := exec.Command(bin, "-c", "-b", "-B", "-C", "5", pw, "ops", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd: %v: %s", err, out)
	}
	remote := filepath.Join(dir, "remote.toml")
	os.WriteFile(remote, []byte("[admin]\nlisten = \"0.0.0.0:9090\"\nbasic_auth = \"admin.htpasswd\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	if err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", remote}, io.Discard, io.Discard); err != nil {
		t.Errorf("-t with basic_auth on 0.0.0.0: %v", err)
	}
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nbasic_auth = \"admin.htpasswd\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	adminAddr := logs.Wait(t, testutil.Context(t, 10*time.Second), `msg="admin listening" addr=(\S+)`)
	for _, tc := range []struct {
		path, user, pass string
		status           int
	}{
		{"/metrics", "", "", http.StatusUnauthorized},
		{"/metrics", "ops", "wrong", http.StatusUnauthorized},
		{"/", "", "", http.StatusUnauthorized},
		{"/tunnels", "", "", http.StatusUnauthorized},
		{"/tunnels/1", "", "", http.StatusUnauthorized},
		{"/dashboard.json", "", "", http.StatusUnauthorized},
		{"POST /tunnels/1/close", "", "", http.StatusUnauthorized},
		{"POST /tunnels/1/close", "ops", "wrong", http.StatusUnauthorized},
		{"/metrics", "ops", "s3cret", http.StatusOK},
		{"/tunnels", "ops", "s3cret", http.StatusOK},
		{"POST /tunnels/1/close", "ops", "s3cret", http.StatusNotFound}, // past the guard: no such tunnel
		{"/healthz", "", "", http.StatusOK},
	} {
		method, path, ok := strings.Cut(tc.path, " ")
		if !ok {
			method, path = http.MethodGet, tc.path
		}
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := scrapeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ")) {
			t.Errorf("%s as %q: %d %q, want %d", tc.path, tc.user, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.status)
		}
	}
	// wssproxy tunnels: without -user it says how to give one; with -user
	// and the password in its variable it lists the tunnels.
	env := map[string]string{admin.PasswordVar: "s3cret"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // in stdout, or else in stderr
	}{
		{nil, nil, "give -user NAME, the password in " + admin.PasswordVar},
		{[]string{"-user", "ops"}, nil, "-user ops: set the password in " + admin.PasswordVar},
		{[]string{"-user", "ops"}, env, "0 tunnels"},
	} {
		var out, errOut strings.Builder
		args := append([]string{"-admin", adminAddr}, tc.args...)
		err := admin.RunTunnelsEnv(testutil.Context(t, 10*time.Second), args, func(k string) string { return tc.env[k] }, &out, &errOut)
		if got := out.String() + errOut.String(); !strings.Contains(got, tc.want) || (err == nil) != (tc.env != nil) {
			t.Errorf("wssproxy tunnels %v: %v, %q; want %q", tc.args, err, got, tc.want)
		}
	}
}
