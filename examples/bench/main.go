// Command bench runs wssproxy, nginx and HAProxy side by side in front of
// the same echo backend and measures them with wsload in the same run:
// round trips, bulk throughput, handshakes and idle tunnels, with each
// proxy's CPU time and RSS read from /proc. compare.sh builds the binaries
// and installs the peers, then runs this; see the README's Performance
// section.
//
// Everything listens on 127.0.0.1; every process it starts is stopped by its
// PID when it ends, also on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/wssproxy/wssproxy/tlsconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	bin      string // holds wssproxy, wsload, echo
	rounds   int
	d        time.Duration
	idle     int
	hold     time.Duration
	peers    bool
	dir      string
	cert     string
	key      string
	combined string
}

// target is one way to reach the echo backend.
type target struct {
	name  string
	url   string
	proc  *proc // nil for direct
	start func(ctx context.Context) (*proc, error)
}

func run(ctx context.Context) error {
	var c config
	flag.StringVar(&c.bin, "bin", "", "directory with the wssproxy, wsload and echo binaries")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of every mode against every target, alternating")
	flag.DurationVar(&c.d, "d", 5*time.Second, "measured time of each rtt, throughput and handshake run")
	flag.IntVar(&c.idle, "idle", 9000, "idle tunnels held per proxy")
	flag.DurationVar(&c.hold, "hold", 10*time.Second, "how long the idle tunnels are held")
	flag.BoolVar(&c.peers, "peers", true, "also measure nginx and HAProxy")
	flag.Parse()
	if c.bin == "" {
		return errors.New("-bin is required (compare.sh sets it)")
	}
	dir, err := os.MkdirTemp("", "wssproxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c.dir = dir
	if err := c.writeCert(); err != nil {
		return err
	}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	started := func(p *proc, err error) (*proc, error) {
		if p != nil {
			procs = append(procs, p)
		}
		return p, err
	}

	backendAddr := freeAddr()
	backend, err := started(c.startBackend(ctx, backendAddr))
	if err != nil {
		return err
	}
	_ = backend
	targets := []*target{{name: "direct", url: "ws://" + backendAddr + "/wss"}}
	add := func(name string, startFn func(ctx context.Context, addr, backend string) (*proc, error)) {
		addr := freeAddr()
		targets = append(targets, &target{name: name, url: "wss://" + addr + "/wss",
			start: func(ctx context.Context) (*proc, error) { return started(startFn(ctx, addr, backendAddr)) }})
	}
	add("wssproxy", c.startWssproxy)
	if c.peers {
		add("nginx", c.startNginx)
		add("haproxy", c.startHAProxy)
	}
	for _, t := range targets[1:] {
		if t.proc, err = t.start(ctx); err != nil {
			return err
		}
	}

	results := map[string]map[string][]*result{} // mode -> target -> runs
	record := func(mode, name string, r *result) {
		if results[mode] == nil {
			results[mode] = map[string][]*result{}
		}
		results[mode][name] = append(results[mode][name], r)
	}
	modes := []struct {
		mode string
		args []string
	}{
		{"rtt", []string{"-c", "100", "-size", "32"}},
		{"throughput", []string{"-c", "4", "-size", "65536", "-window", "4"}},
		{"handshake", []string{"-c", "4", "-size", "32"}},
	}
	for round := range c.rounds {
		for _, m := range modes {
			for i := range targets {
				t := targets[(i+round)%len(targets)] // a different target goes first each round
				if m.mode == "handshake" && t.proc == nil {
					continue // no TLS to measure
				}
				r, err := c.wsload(ctx, t, append([]string{"-mode", m.mode, "-d", c.d.String()}, m.args...))
				if err != nil {
					return fmt.Errorf("%s %s: %w", m.mode, t.name, err)
				}
				record(m.mode, t.name, r)
			}
		}
	}

	// Idle tunnels: each proxy fresh, so "before" is a proxy that has
	// served nothing, as it is after a restart.
	for _, t := range targets[1:] {
		t.proc.stop()
		if t.proc, err = t.start(ctx); err != nil {
			return err
		}
		r, err := c.wsload(ctx, t, []string{"-mode", "idle", "-n", fmt.Sprint(c.idle), "-hold", c.hold.String(), "-sources", "16"})
		if err != nil {
			return fmt.Errorf("idle %s: %w", t.name, err)
		}
		record("idle", t.name, r)
	}
	printTable(os.Stdout, &c, targets, results)
	return nil
}

func (c *config) wsload(ctx context.Context, t *target, args []string) (*result, error) {
	args = append(args, "-url", t.url, "-ca", c.cert, "-server-name", "localhost", "-curves", "X25519")
	if t.proc != nil {
		args = append(args, "-pids", fmt.Sprint(t.proc.cmd.Process.Pid))
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "wsload"), args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wsload %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	lines := strings.SplitN(out.String(), "\n", 2)
	var r result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		return nil, fmt.Errorf("wsload output %q: %w", lines[0], err)
	}
	fmt.Fprintf(os.Stderr, "%-8s %s", t.name, lines[1])
	return &r, nil
}

// result is the part of wsload's JSON line that the table uses.
type result struct {
	MsgsPerS      float64 `json:"msgs_per_s"`
	P99ms         float64 `json:"p99_ms"`
	MBpsUp        float64 `json:"mb_per_s_up"`
	HsPerS        float64 `json:"handshakes_per_s"`
	CPUusPerMsg   float64 `json:"proxy_cpu_us_per_msg"`
	CPUmsPerMB    float64 `json:"proxy_cpu_ms_per_mb"`
	CPUusPerHs    float64 `json:"proxy_cpu_us_per_handshake"`
	RSSBeforeKiB  float64 `json:"proxy_rss_kib_before"`
	RSSKiBPerConn float64 `json:"proxy_rss_kib_per_conn"`
	Echoed        float64 `json:"still_echoing"`
}

// proc is a process this program started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

func (c *config) spawn(ctx context.Context, name, addr string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{}), log: &bytes.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return p, fmt.Errorf("%s exited: %s", name, p.log)
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%s is not listening on %s after 15 s: %s", name, addr, p.log)
		}
	}
}

// stop sends SIGTERM to the process's PID, and SIGKILL if it is still
// there after 10 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (c *config) startBackend(ctx context.Context, addr string) (*proc, error) {
	return c.spawn(ctx, "echo", addr, filepath.Join(c.bin, "echo"), "-listen", addr)
}

func (c *config) startWssproxy(ctx context.Context, addr, backend string) (*proc, error) {
	cfg := filepath.Join(c.dir, "wssproxy.toml")
	err := writeTemplate(cfg, `listen = "{{.addr}}"
log_level = "warn" # no per-tunnel log lines, like access_log off
shutdown_timeout = "5s"
[tls]
cert = "{{.cert}}"
key = "{{.key}}"
[admin]
listen = ""
[[route]]
path = "/wss"
backend = "ws://{{.backend}}"
`, map[string]string{"addr": addr, "cert": c.cert, "key": c.key, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "wssproxy", addr, filepath.Join(c.bin, "wssproxy"), "-config", cfg)
}

func (c *config) startNginx(ctx context.Context, addr, backend string) (*proc, error) {
	prefix := filepath.Join(c.dir, "nginx")
	os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755)
	cfg := filepath.Join(prefix, "nginx.conf")
	err := writeTemplate(cfg, `# The seeds' nginx block, tuned only as its users would: a worker per
# core, enough connections for the idle test, no access log.
worker_processes 2;
worker_rlimit_nofile 20000;
pid {{.prefix}}/nginx.pid;
error_log {{.prefix}}/error.log warn;
events { worker_connections 19500; }
http {
  access_log off;
  client_body_temp_path {{.prefix}}/tmp/body;
  proxy_temp_path {{.prefix}}/tmp/proxy;
  fastcgi_temp_path {{.prefix}}/tmp/fastcgi;
  uwsgi_temp_path {{.prefix}}/tmp/uwsgi;
  scgi_temp_path {{.prefix}}/tmp/scgi;
  server {
    listen {{.addr}} ssl;
    ssl_certificate {{.cert}};
    ssl_certificate_key {{.key}};
    ssl_protocols TLSv1.2 TLSv1.3;
    location /wss {
      proxy_pass http://{{.backend}};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "Upgrade";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
`, map[string]string{"prefix": prefix, "addr": addr, "cert": c.cert, "key": c.key, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "nginx", addr, "nginx", "-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-c", cfg, "-g", "daemon off;")
}

func (c *config) startHAProxy(ctx context.Context, addr, backend string) (*proc, error) {
	cfg := filepath.Join(c.dir, "haproxy.cfg")
	err := writeTemplate(cfg, `# The same job for HAProxy: one process, a thread per core, no logs.
global
  maxconn 9700
  nbthread 2
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend wss
  bind {{.addr}} ssl crt {{.combined}} alpn http/1.1
  http-request set-header X-Real-IP %[src]
  default_backend echo
backend echo
  server echo {{.backend}}
`, map[string]string{"addr": addr, "combined": c.combined, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "haproxy", addr, "haproxy", "-db", "-f", cfg)
}

func writeTemplate(path, text string, data map[string]string) error {
	var b bytes.Buffer
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// writeCert makes the one ECDSA P-256 certificate every proxy serves.
func (c *config) writeCert() error {
	cert, err := tlsconf.SelfSigned([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	c.cert, c.key, c.combined = filepath.Join(c.dir, "cert.pem"), filepath.Join(c.dir, "key.pem"), filepath.Join(c.dir, "combined.pem")
	for f, b := range map[string][]byte{c.cert: certPEM, c.key: keyPEM, c.combined: append(slices.Clone(certPEM), keyPEM...)} {
		if err := os.WriteFile(f, b, 0o644); err != nil { // nginx's workers run as nobody
			return err
		}
	}
	return nil
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func median(rs []*result, f func(*result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printTable(w io.Writer, c *config, targets []*target, results map[string]map[string][]*result) {
	rows := []struct {
		label, mode string
		f           func(*result) float64
		format      string
		proxyOnly   bool
	}{
		{"msgs/s, 32 B round trips, 100 connections", "rtt", func(r *result) float64 { return r.MsgsPerS }, "%.0f", false},
		{"p99 round trip, ms", "rtt", func(r *result) float64 { return r.P99ms }, "%.2f", false},
		{"**proxy CPU µs per message** (32 B echo)", "rtt", func(r *result) float64 { return r.CPUusPerMsg }, "%.1f", true},
		{"MB/s each way, 64 KiB messages, 4 connections", "throughput", func(r *result) float64 { return r.MBpsUp }, "%.0f", false},
		{"**proxy CPU ms per MB** (both directions)", "throughput", func(r *result) float64 { return r.CPUmsPerMB }, "%.2f", true},
		{"handshakes/s, 4 at a time", "handshake", func(r *result) float64 { return r.HsPerS }, "%.0f", true},
		{"**proxy CPU µs per handshake** (TLS 1.3 + upgrade + echo + close)", "handshake", func(r *result) float64 { return r.CPUusPerHs }, "%.0f", true},
		{fmt.Sprintf("proxy RSS KiB before the idle test"), "idle", func(r *result) float64 { return r.RSSBeforeKiB }, "%.0f", true},
		{fmt.Sprintf("**proxy RSS KiB per idle tunnel** (%d held %v)", c.idle, c.hold), "idle", func(r *result) float64 { return r.RSSKiBPerConn }, "%.1f", true},
	}
	fmt.Fprintf(w, "\n| figure (median of %d rounds; idle: one) |", c.rounds)
	for _, t := range targets {
		fmt.Fprintf(w, " %s |", t.name)
	}
	fmt.Fprint(w, "\n|---|")
	for range targets {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.label)
		ref := median(results[row.mode]["nginx"], row.f)
		for _, t := range targets {
			rs := results[row.mode][t.name]
			if len(rs) == 0 || (row.proxyOnly && t.proc == nil) {
				fmt.Fprint(w, " — |")
				continue
			}
			v := median(rs, row.f)
			fmt.Fprintf(w, " "+row.format, v)
			if ref > 0 && t.name != "nginx" && t.proc != nil {
				fmt.Fprintf(w, " (%.2f×)", v/ref)
			}
			fmt.Fprint(w, " |")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\n(×) is the ratio to nginx in this run. Lower is better for CPU, p99 and RSS.")
}
