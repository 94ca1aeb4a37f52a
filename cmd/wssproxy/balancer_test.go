package main

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
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

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// haproxyConfig is TestHAProxy's balancer, and docs/operations.md's: TCP mode,
// PROXY protocol v2 to every replica, health checks on each replica's
// admin /readyz (a draining replica answers 503 and leaves rotation within
// a check), and a connection a replica refuses (its listener has just
// closed) tried again on another. Filled in: the stats socket, the
// frontend address, the server lines.
const haproxyConfig = `global
	stats socket %s mode 600 level user
	maxconn 4000

defaults
	mode tcp
	timeout connect 2s
	timeout client 1h
	timeout server 1h
	timeout check 1s
	retries 3
	option redispatch 1

frontend wss
	bind %s
	default_backend wssproxy

backend wssproxy
	balance roundrobin
	option httpchk
	http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
	http-check expect status 200
	default-server send-proxy-v2 check inter 200ms fall 1 rise 2
%s`

// TestHAProxy guards scale-out behind a real L4 balancer: Debian's
// HAProxy in TCP mode (send-proxy-v2, health checks on each replica's
// /readyz) in front of three wssproxy processes with proxy_protocol.
//   - HAProxy's checks on /readyz pass, and clients, each bound to a
//     127.0.0.x source of its own, spread over the three replicas;
//   - every backend answer names the client's own address as the
//     X-Real-IP the backend received;
//   - SIGTERM to one replica under load: HAProxy sees its /readyz fail
//     (503) while it drains and takes it out of rotation; its clients get
//     1001 at moments spread over close_spread (first to last at least two
//     thirds of it), reconnect through HAProxy and land on the other two;
//   - a loop of new connections through HAProxy all the while has none
//     fail.
func TestHAProxy(t *testing.T) {
	t.Parallel()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil && exists("/usr/sbin/haproxy") { // a PATH without sbin
		haproxy, err = "/usr/sbin/haproxy", nil
	}
	testutil.Need(t, err == nil, "no haproxy on PATH or in /usr/sbin (apt-get install haproxy)")
	bin := buildBinary(t)
	ctx := testutil.Deadline(t)
	dir := t.TempDir()
	const spread = 2 * time.Second
	replicas := make([]*replica, 3)
	for i := range replicas {
		replicas[i] = startReplica(t, ctx, bin, dir, fmt.Sprintf("r%d", i+1), spread)
	}
	lb := startHAProxy(t, ctx, haproxy, dir, replicas)

	const n = 90 // clients 127.0.0.10 to 127.0.0.99; the connect loop comes from 127.0.1.x
	l := &lbLoad{url: "wss://" + lb.addr + "/wss", landed: make(chan landing, 16*n), failed: make(chan struct{})}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stopLoad(); wg.Wait() }) // before HAProxy and the replicas stop
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		wg.Go(func() { l.client(lctx, ip) })
	}
	next := func(what string) landing {
		t.Helper()
		select {
		case x := <-l.landed:
			return x
		case <-l.failed:
			t.Fatalf("waiting for %s: %s", what, l.firstFailure())
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
		return landing{}
	}
	per := map[string]int{}
	for range n {
		per[next("every client's first tunnel").replica]++
	}
	for _, r := range replicas {
		if per[r.name] < n/6 {
			t.Errorf("replica %s carries %d of %d clients, want them spread over the three: %v", r.name, per[r.name], n, per)
		}
	}
	for j := range 2 {
		ip := fmt.Sprintf("127.0.1.%d", j+1)
		wg.Go(func() { l.connectLoop(lctx, ip) })
	}
	waitFor(t, ctx, "the connect loop's first connections", func() bool { return l.loopCount() >= 20 })

	draining := replicas[0]
	loopBefore := l.loopCount()
	sigterm := time.Now()
	draining.p.cmd.Process.Signal(syscall.SIGTERM)
	var out string
	waitFor(t, ctx, "HAProxy to take "+draining.name+" out of rotation", func() bool {
		st, err := lb.servers()
		out = st[draining.name]
		return err == nil && strings.HasPrefix(out, "DOWN")
	})
	l.takenOut()
	tookOut := time.Since(sigterm)
	// close_spread is ten check intervals: the replica is still draining,
	// its admin server still answering, when HAProxy takes it out.
	select {
	case <-draining.p.exited:
		t.Errorf("%s exited before HAProxy took it out (%s): its /readyz should have answered 503 while it drained", draining.name, out)
	default:
		if out != "DOWN L7STS" { // the check's HTTP status (503), not a refused connection
			t.Errorf("HAProxy's view of the draining %s: %q, want DOWN L7STS", draining.name, out)
		}
	}
	for range per[draining.name] {
		if x := next("the drained clients to reconnect"); x.replica == draining.name {
			t.Errorf("client %s reconnected to the draining replica", x.client)
		}
	}
	select {
	case <-draining.p.exited:
		if draining.p.err != nil {
			t.Errorf("%s: %v", draining.name, draining.p.err)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not exit:\n%s", draining.name, draining.p.logs)
	}
	waitFor(t, ctx, "new connections after the drain", func() bool { return l.loopCount() >= loopBefore+40 })
	stopLoad()
	wg.Wait()
	retried, _ := lb.stat("wssproxy", "BACKEND", "wredis")

	if len(l.failures) > 0 {
		t.Errorf("%d failures, first: %s", len(l.failures), l.failures[0])
	}
	if got, want := len(l.closes), per[draining.name]; got != want {
		t.Errorf("%d clients got 1001, want the %d on %s", got, want, draining.name)
	}
	var first, last time.Time
	for i, c := range l.closes {
		if c.replica != draining.name {
			t.Errorf("a client on %s got 1001", c.replica)
		}
		if i == 0 || c.at.Before(first) {
			first = c.at
		}
		if c.at.After(last) {
			last = c.at
		}
	}
	if got := last.Sub(first); got < spread*2/3 {
		t.Errorf("the 1001s arrived within %v, want them spread over at least %v of the %v close_spread", got, spread*2/3, spread)
	}
	after := map[string]int{}
	for _, c := range l.loop {
		if c.afterDrain {
			after[c.replica]++
		}
	}
	if after[draining.name] != 0 {
		t.Errorf("%d new connections reached %s after HAProxy took it out", after[draining.name], draining.name)
	}
	t.Logf("clients per replica %v; %d got 1001 from %s over %v and reconnected to the others; connect loop: %d connections, %d closed with 1001 by the drain, %d failed; HAProxy took %s out after %v, redispatched %s connections; after that %v",
		per, len(l.closes), draining.name, last.Sub(first).Round(time.Millisecond), len(l.loop), l.loopGoingAway, len(l.failures), draining.name, tookOut.Round(time.Millisecond), retried, after)
}

// replica is one wssproxy process of TestHAProxy, with its own backend.
type replica struct {
	name  string
	p     *proc
	admin string // the admin listener's address, where HAProxy checks /readyz
}

func startReplica(t *testing.T, ctx context.Context, bin, dir, name string, spread time.Duration) *replica {
	t.Helper()
	backend := "ws://" + testutil.Serve(t, lbBackend(name))
	cfg := filepath.Join(dir, name+".toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
shutdown_timeout = "10s"
close_spread = %q
proxy_protocol = true
proxy_protocol_from = ["127.0.0.1"]
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backend = %q
`, spread.String(), backend)), 0o600)
	p := startProc(t, ctx, bin, "-config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", name, p.logs)
		}
	})
	return &replica{name: name, p: p, admin: p.logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)}
}

// lbBackend is a replica's backend: it answers every message with
// "<replica> <X-Real-IP> <message>", so a client learns which replica
// carries its tunnel and what address the backend was given for it.
func lbBackend(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		prefix := name + " " + r.Header.Get("X-Real-IP") + " "
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				if errors.As(err, new(websocket.CloseError)) {
					c.Close(websocket.StatusNormalClosure, "")
				}
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(prefix), msg...)); err != nil {
				return
			}
		}
	})
}

// balancer is the HAProxy process of TestHAProxy.
type balancer struct {
	addr string // the frontend
	sock string // the stats socket
}

// startHAProxy runs HAProxy in front of rs, stops it by its PID when the
// test ends, and returns once its health checks have passed on every
// replica.
func startHAProxy(t *testing.T, ctx context.Context, haproxy, dir string, rs []*replica) *balancer {
	t.Helper()
	b := &balancer{addr: testutil.ClosedPort(t), sock: filepath.Join(dir, "haproxy.sock")}
	var servers strings.Builder
	for _, r := range rs {
		_, adminPort, _ := net.SplitHostPort(r.admin)
		fmt.Fprintf(&servers, "\tserver %s %s check port %s\n", r.name, r.p.addr, adminPort)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyConfig, b.sock, b.addr, servers.String())), 0o600)
	if out, err := exec.Command(haproxy, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	cmd := exec.Command(haproxy, "-f", cfg, "-db")
	logs := &testutil.Logs{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy:\n%s", logs)
		}
	})
	waitFor(t, ctx, "HAProxy's checks on every replica's /readyz to pass", func() bool {
		st, err := b.servers()
		ok := err == nil && len(st) == len(rs)
		for _, s := range st {
			ok = ok && s == "UP L7OK"
		}
		return ok
	})
	return b
}

// showStat asks HAProxy's stats socket for its statistics: the records,
// with the header first, and the columns by name.
func (b *balancer) showStat() ([][]string, map[string]int, error) {
	c, err := net.DialTimeout("unix", b.sock, time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(c)
	if err != nil {
		return nil, nil, err
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "# "))).ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, nil, fmt.Errorf("show stat: %v\n%s", err, data)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	return recs, col, nil
}

// servers is each server's state and last check result, as "UP L7OK"
// (up, the check got its 200) or "DOWN L7STS" (the check got another
// status).
func (b *balancer) servers() (map[string]string, error) {
	recs, col, err := b.showStat()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, rec := range recs[1:] {
		if rec[col["pxname"]] == "wssproxy" && rec[col["svname"]] != "BACKEND" {
			out[rec[col["svname"]]] = rec[col["status"]] + " " + rec[col["check_status"]]
		}
	}
	return out, nil
}

// stat is one field of HAProxy's statistics for a proxy and server.
func (b *balancer) stat(proxy, server, field string) (string, error) {
	recs, col, err := b.showStat()
	if err != nil {
		return "", err
	}
	for _, rec := range recs[1:] {
		if rec[col["pxname"]] == proxy && rec[col["svname"]] == server {
			return rec[col[field]], nil
		}
	}
	return "", fmt.Errorf("show stat: no %s/%s", proxy, server)
}

// waitFor waits until cond holds, checking it every 20 ms, or fails the
// test when ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// lbLoad is TestHAProxy's load through the balancer and what it saw.
type lbLoad struct {
	url    string
	landed chan landing // a client's tunnel is up

	mu            sync.Mutex
	failures      []string
	failed        chan struct{} // closed at the first failure
	closes        []goingAway   // the clients' 1001s
	loop          []loopConn    // the connect loop's connections
	loopGoingAway int           // of which closed with 1001 by a drain
	out           bool          // HAProxy has taken the draining replica out
}

type landing struct{ client, replica string }

type goingAway struct {
	replica string
	at      time.Time
}

type loopConn struct {
	replica    string
	afterDrain bool // dialled after HAProxy took the draining replica out
}

func (l *lbLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) == 0 {
		close(l.failed)
	}
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

func (l *lbLoad) firstFailure() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[0]
}

func (l *lbLoad) takenOut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = true
}

func (l *lbLoad) loopCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.loop)
}

// sourceClient is an HTTP client whose connections come from ip, a new
// one for every dial.
func sourceClient(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	}}
}

// dial opens a tunnel through the balancer from hc and asks who carries
// it: the answer must name ip, hc's source, as the backend's X-Real-IP.
func (l *lbLoad) dial(ctx context.Context, hc *http.Client, ip string) (*websocket.Conn, string, error) {
	c, _, err := websocket.Dial(ctx, l.url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, "", fmt.Errorf("dial: %w", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("who")); err != nil {
		c.CloseNow()
		return nil, "", err
	}
	_, msg, err := c.Read(ctx)
	if err != nil {
		c.CloseNow()
		return nil, "", err
	}
	replica, _, _ := strings.Cut(string(msg), " ")
	if err := checkReply(msg, replica, ip, "who"); err != nil {
		c.CloseNow()
		return nil, "", err
	}
	return c, replica, nil
}

// checkReply checks a backend's answer to msg: from replica, naming ip.
func checkReply(got []byte, replica, ip, msg string) error {
	if want := replica + " " + ip + " " + msg; string(got) != want {
		return fmt.Errorf("backend answered %q, want %q (replica, X-Real-IP, message)", got, want)
	}
	return nil
}

// client keeps one tunnel from ip busy until ctx ends; when a replica
// closes it with 1001 it reconnects through the balancer.
func (l *lbLoad) client(ctx context.Context, ip string) {
	hc := sourceClient(ip)
	defer hc.CloseIdleConnections()
	for {
		c, replica, err := l.dial(ctx, hc, ip)
		if ctx.Err() != nil {
			if c != nil {
				c.CloseNow()
			}
			return
		}
		if err != nil {
			l.fail("client %s: %v", ip, err)
			return
		}
		select {
		case l.landed <- landing{ip, replica}:
		case <-ctx.Done():
		}
		err = hold(ctx, c, replica, ip)
		c.CloseNow()
		switch {
		case ctx.Err() != nil:
			return
		case websocket.CloseStatus(err) == websocket.StatusGoingAway:
			l.mu.Lock()
			l.closes = append(l.closes, goingAway{replica, time.Now()})
			l.mu.Unlock()
		default:
			l.fail("client %s on %s: %v", ip, replica, err)
			return
		}
	}
}

// hold keeps c busy, a message every 100 ms with each answer checked,
// until c fails or closes or ctx ends. A Read waits all the while, so a
// close frame is seen the moment it arrives.
func hold(ctx context.Context, c *websocket.Conn, replica, ip string) error {
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			if c.Write(wctx, websocket.MessageText, []byte("ping")) != nil {
				return
			}
		}
	})
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := checkReply(msg, replica, ip, "ping"); err != nil {
			return err
		}
	}
}

// connectLoop opens new tunnels from ip through the balancer, one exchange
// and a normal close each, until ctx ends. A tunnel a drain closes with
// 1001 is a clean end; anything else that goes wrong is a failure.
func (l *lbLoad) connectLoop(ctx context.Context, ip string) {
	hc := sourceClient(ip)
	defer hc.CloseIdleConnections()
	for ctx.Err() == nil {
		l.mu.Lock()
		after := l.out
		l.mu.Unlock()
		c, replica, err := l.dial(ctx, hc, ip)
		if err == nil {
			err = c.Close(websocket.StatusNormalClosure, "")
		}
		switch {
		case ctx.Err() != nil:
			return
		case websocket.CloseStatus(err) == websocket.StatusGoingAway:
			l.mu.Lock()
			l.loop = append(l.loop, loopConn{replica, after})
			l.loopGoingAway++
			l.mu.Unlock()
		case err != nil:
			l.fail("connect loop from %s: %v", ip, err)
		default:
			l.mu.Lock()
			l.loop = append(l.loop, loopConn{replica, after})
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond): // paced, not flooding
		}
	}
}
