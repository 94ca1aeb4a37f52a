// Command bench runs wssproxy, nginx, HAProxy and Caddy side by side in
// front of the same echo backend and measures them with wsload in the same
// run: round trips, bulk throughput, handshakes and idle tunnels, with each
// proxy's CPU time and RSS read from /proc. It also measures how the cost
// grows: CPU per 32 B message at 10, 100 and 1,000 connections, and RSS
// per idle tunnel as one fresh process holds 1,000, then 5,000, then 9,000.
// compare.sh builds the binaries and installs the peers, then runs this;
// see docs/performance.md.
//
// Every mode runs -rounds times against every target, a different target
// first in each round, and the table gives medians; the idle tunnels are
// held once per proxy, each freshly started. The table has one column per
// target and the ratio of wssproxy to each peer, then the targets of issue
// 16, met or not. The table, the raw results (JSON and TSV) and a plot of
// the growth runs (PNG, drawn by gnuplot) go to -out.
//
// Everything listens on 127.0.0.1; every process it starts is stopped by its
// PID when it ends, also on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	h2       bool
	growth   bool
	conns    []int // rtt connection counts: 100, and -growth-conns
	steps    []int // idle tunnels held in turn, ending at -idle
	out      string
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
	args  []string // wsload's own for this target (-h2)
}

// h2Name is the target that is wssproxy with WebSockets as streams of
// HTTP/2 connections (RFC 8441, as browsers open them on a page's
// connection), 100 to a connection.
const h2Name = "wssproxy-h2"

// peerNames are the proxies wssproxy is compared with, in table order.
var peerNames = []string{"nginx", "haproxy", "caddy"}

// maxTunnels is the most connections a run makes through a proxy: 9,500
// tunnels take 19,000 descriptors in the proxy and 9,500 in wsload and in
// the backend, and the open-files limit here is 20,000 per process.
const maxTunnels = 9500

// tableConns is the rtt connection count of the table's main rows and of
// the targets.
const tableConns = 100

func run(ctx context.Context) error {
	var c config
	var growthConns, growthTunnels string
	flag.StringVar(&c.bin, "bin", "", "directory with the wssproxy, wsload and echo binaries")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of every mode against every target, a different target first each round")
	flag.DurationVar(&c.d, "d", 5*time.Second, "measured time of each rtt, throughput and handshake run")
	flag.IntVar(&c.idle, "idle", 9000, "idle tunnels held per proxy, freshly started (the table's RSS per tunnel)")
	flag.DurationVar(&c.hold, "hold", 10*time.Second, "how long the idle tunnels are held at each step before RSS is read")
	flag.BoolVar(&c.peers, "peers", true, "also measure nginx, HAProxy and Caddy")
	flag.BoolVar(&c.h2, "h2", true, "also measure wssproxy with WebSockets over HTTP/2 ("+h2Name+": 100 streams to a connection), against wssproxy over HTTP/1.1")
	flag.BoolVar(&c.growth, "growth", true, "also measure CPU per message at -growth-conns and RSS per tunnel at -growth-tunnels, and plot them")
	flag.StringVar(&growthConns, "growth-conns", "10,100,1000", "growth: rtt connection counts (32 B messages)")
	flag.StringVar(&growthTunnels, "growth-tunnels", "1000,5000", "growth: idle tunnels held on the way to -idle, RSS read at each (counts above -idle are left out)")
	flag.StringVar(&c.out, "out", "bench-out", "directory for the table, raw results and plot")
	flag.Parse()
	if c.bin == "" {
		return errors.New("-bin is required (compare.sh sets it)")
	}
	if c.rounds < 1 || c.idle < 1 || c.idle > maxTunnels {
		return fmt.Errorf("-rounds: want 1 or more; -idle: want 1 to %d", maxTunnels)
	}
	c.conns, c.steps = []int{tableConns}, []int{c.idle}
	if c.growth {
		gc, err := counts("-growth-conns", growthConns, maxTunnels)
		if err != nil {
			return err
		}
		gt, err := counts("-growth-tunnels", growthTunnels, maxTunnels)
		if err != nil {
			return err
		}
		c.conns = union(c.conns, gc)
		c.steps = union(c.steps, slices.DeleteFunc(gt, func(n int) bool { return n > c.idle }))
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
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
	if _, err := started(c.startBackend(ctx, backendAddr)); err != nil {
		return err
	}
	targets := []*target{{name: "direct", url: "ws://" + backendAddr + "/wss"}}
	add := func(name string, startFn func(ctx context.Context, addr, backend string) (*proc, error)) {
		addr := freeAddr()
		targets = append(targets, &target{name: name, url: "wss://" + addr + "/wss",
			start: func(ctx context.Context) (*proc, error) { return started(startFn(ctx, addr, backendAddr)) }})
	}
	add("wssproxy", c.startWssproxy)
	if c.h2 {
		add(h2Name, c.startWssproxyH2)
		targets[len(targets)-1].args = []string{"-h2", "-streams", "100"}
	}
	if c.peers {
		add("nginx", c.startNginx)
		add("haproxy", c.startHAProxy)
		add("caddy", c.startCaddy)
	}
	versions := c.versions(targets)
	fmt.Fprintln(os.Stderr, strings.Join(versions, ", "))
	for _, t := range targets[1:] {
		if t.proc, err = t.start(ctx); err != nil {
			return err
		}
	}

	res := runs{}
	var modes []mode
	for _, n := range c.conns {
		modes = append(modes, mode{key: rttKey(n), args: []string{"-mode", "rtt", "-c", strconv.Itoa(n), "-size", "32"}, proxyOnly: n != tableConns})
	}
	modes = append(modes,
		mode{key: "throughput", args: []string{"-mode", "throughput", "-c", "4", "-size", "65536", "-window", "4"}},
		mode{key: "handshake", args: []string{"-mode", "handshake", "-c", "4", "-size", "32"}, proxyOnly: true}, // direct has no TLS to measure
	)
	began := time.Now()
	for round := range c.rounds {
		for _, m := range modes {
			for i := range targets {
				t := targets[(i+round)%len(targets)] // a different target goes first each round
				if m.proxyOnly && t.proc == nil {
					continue
				}
				r, err := c.wsload(ctx, t, append(slices.Clone(m.args), "-d", c.d.String()))
				if err != nil {
					return fmt.Errorf("%s %s: %w", m.key, t.name, err)
				}
				res.add(m.key, t.name, round, r)
			}
		}
		fmt.Fprintf(os.Stderr, "round %d of %d done after %v\n", round+1, c.rounds, time.Since(began).Round(time.Second))
	}

	// Idle tunnels: each proxy fresh, so "before" is a proxy that has
	// served nothing, as it is after a restart; one process holds each
	// step's count in turn.
	steps := make([]string, len(c.steps))
	for i, n := range c.steps {
		steps[i] = strconv.Itoa(n)
	}
	for _, t := range targets[1:] {
		t.proc.stop()
		if t.proc, err = t.start(ctx); err != nil {
			return err
		}
		r, err := c.wsload(ctx, t, []string{"-mode", "idle", "-steps", strings.Join(steps, ","), "-hold", c.hold.String(), "-sources", "16"})
		if err != nil {
			return fmt.Errorf("idle %s: %w", t.name, err)
		}
		res.add("idle", t.name, 0, r)
	}
	for _, t := range targets[1:] {
		t.proc.stop()
	}
	fmt.Fprintf(os.Stderr, "measured in %v\n", time.Since(began).Round(time.Second))

	var table bytes.Buffer
	printTable(&table, &c, targets, res)
	printTargets(&table, &c, res)
	os.Stdout.Write(table.Bytes())
	files, err := writeOutputs(ctx, &c, targets, res, table.Bytes(), versions)
	for _, f := range files {
		fmt.Fprintln(os.Stdout, "wrote", f)
	}
	return err
}

// mode is one kind of wsload run, made against every target each round.
type mode struct {
	key       string // in runs and the raw results: rtt/100, throughput, handshake; idle
	args      []string
	proxyOnly bool // not against the backend directly
}

func rttKey(conns int) string { return "rtt/" + strconv.Itoa(conns) }

// counts parses a comma-separated list of counts from 1 to max.
func counts(flagName, s string, max int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > max {
			return nil, fmt.Errorf("%s: want counts from 1 to %d, got %q", flagName, max, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// union is the sorted set of a's and b's elements.
func union(a, b []int) []int {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *config) wsload(ctx context.Context, t *target, args []string) (*result, error) {
	args = append(slices.Concat(args, t.args), "-url", t.url, "-ca", c.cert, "-server-name", "localhost", "-curves", "X25519")
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
	r := &result{raw: json.RawMessage(lines[0]), args: args}
	if err := json.Unmarshal(r.raw, r); err != nil {
		return nil, fmt.Errorf("wsload output %q: %w", lines[0], err)
	}
	fmt.Fprintf(os.Stderr, "%-8s %s", t.name, lines[1])
	return r, nil
}

// result is the part of wsload's JSON line that the table uses, and the
// line itself for the raw results.
type result struct {
	Conns         int        `json:"conns"`
	MsgsPerS      float64    `json:"msgs_per_s"`
	P50ms         float64    `json:"p50_ms"`
	P99ms         float64    `json:"p99_ms"`
	MBpsUp        float64    `json:"mb_per_s_up"`
	HsPerS        float64    `json:"handshakes_per_s"`
	CPUusPerMsg   float64    `json:"proxy_cpu_us_per_msg"`
	CPUmsPerMB    float64    `json:"proxy_cpu_ms_per_mb"`
	CPUusPerHs    float64    `json:"proxy_cpu_us_per_handshake"`
	RSSBeforeKiB  float64    `json:"proxy_rss_kib_before"`
	RSSKiBPerConn float64    `json:"proxy_rss_kib_per_conn"`
	Steps         []idleStep `json:"steps"`

	raw  json.RawMessage
	args []string
}

// idleStep is one of an idle run's -steps.
type idleStep struct {
	Held          int     `json:"held"`
	RSSHoldingKiB float64 `json:"proxy_rss_kib_holding"`
	RSSKiBPerConn float64 `json:"proxy_rss_kib_per_conn"`
}

// rssPerTunnel reads RSS per tunnel at held from an idle run.
func rssPerTunnel(held int) func(*result) float64 {
	return func(r *result) float64 {
		for _, s := range r.Steps {
			if s.Held == held {
				return s.RSSKiBPerConn
			}
		}
		return 0
	}
}

// versions names what is measured, for the log and the raw results.
func (c *config) versions(targets []*target) []string {
	first := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		if name == "caddy" {
			cmd.Env = append(os.Environ(), c.caddyEnv()...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return name + " (version unknown)"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	v := []string{first(filepath.Join(c.bin, "wssproxy"), "-version")}
	for _, t := range targets {
		switch t.name {
		case "nginx":
			v = append(v, first("nginx", "-v"))
		case "haproxy":
			v = append(v, first("haproxy", "-v"))
		case "caddy":
			v = append(v, "caddy "+first("caddy", "version"))
		}
	}
	return append(v, runtime.Version(), fmt.Sprintf("%d cores", runtime.NumCPU()))
}
