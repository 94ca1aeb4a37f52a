// Package probe is `wssproxy probe`: a diagnostic WebSocket client that
// checks an endpoint step by step (DNS, TCP, TLS and the certificate
// chain, TLS 1.2, the upgrade, round trips) as a browser reaches it, and
// says what to fix. cmd/wssproxy lists Run in its subcommand table.
package probe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/urlport"
)

// Probe exit codes: each kind of failure has its own, so scripts can act
// on them. Documented in docs/troubleshooting.md.
const (
	probeOK          = 0
	probeUsage       = 1
	probeDNS         = 2
	probeTCP         = 3
	probeTLS         = 4
	probeCertificate = 5
	probeUpgrade     = 6
	probeTLS12       = 7
	probeMessage     = 8
)

type probeOptions struct {
	url         *url.URL
	insecure    bool
	ca          string
	resolve     string
	headers     http.Header
	subprotocol string
	message     string
	count       int
	json        bool
	timeout     time.Duration
	resolver    *net.Resolver // nil: the system's
}

// probeReport is what probe found, step by step; -json prints it whole.
type probeReport struct {
	URL     string `json:"url"`
	OK      bool   `json:"ok"`
	Exit    int    `json:"exit_code"`
	Problem string `json:"problem,omitempty"` // one line: what to fix
	// Warnings are problems -insecure went on past: the round trip may
	// work here and still fail for browsers.
	Warnings []string    `json:"warnings,omitempty"`
	Steps    []probeStep `json:"steps"`
	Reply    string      `json:"reply,omitempty"`
	RTT      *rttStats   `json:"rtt_ms,omitempty"`
}

type probeStep struct {
	Step   string            `json:"step"`
	OK     bool              `json:"ok"`
	MS     float64           `json:"ms"`
	Detail map[string]string `json:"detail,omitempty"`
	Lines  []string          `json:"lines,omitempty"`
}

type rttStats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type headerFlag struct{ h http.Header }

func (f headerFlag) String() string { return "" }
func (f headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want Name: value, got %q", s)
	}
	f.h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	return nil
}

func parseProbe(args []string, stdout io.Writer) (*probeOptions, error) {
	o := &probeOptions{headers: http.Header{}}
	fs := flag.NewFlagSet("wssproxy probe", flag.ContinueOnError)
	fs.BoolVar(&o.insecure, "insecure", false, "go on when the certificate does not verify (it is still checked, and reported as a warning)")
	fs.StringVar(&o.ca, "ca", "", "PEM `file` of roots to trust instead of the system's")
	fs.StringVar(&o.resolve, "resolve", "", "connect to `host:ip` instead of resolving host (test a server before DNS points at it)")
	fs.Var(headerFlag{o.headers}, "header", "extra request `header` \"Name: value\" (repeatable), e.g. Origin or Cookie")
	fs.StringVar(&o.subprotocol, "subprotocol", "", "offer this WebSocket `subprotocol`")
	fs.StringVar(&o.message, "message", "tom", "`text` to send; the reply is printed")
	fs.IntVar(&o.count, "n", 1, "round trips, for latency percentiles")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "time limit of each step")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy probe [flags] wss://host[:port]/path\n\nChecks a WebSocket endpoint step by step, as a browser would reach it,\nand says what to fix. Flags:\n\n")
		fs.PrintDefaults()
	}
	bad := func(format string, args ...any) error {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf(format, args...)}
	}
	// Flags may come before or after the URL.
	var rest []string
	for len(args) > 0 {
		if err := cli.ParseArgs(fs, args, stdout); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			rest = append(rest, args[0])
			args = args[1:]
		}
	}
	if len(rest) != 1 {
		return nil, bad("probe takes one URL, like wss://chat.example.com/wss")
	}
	u, err := url.Parse(rest[0])
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws" && u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return nil, bad("%q is not a ws:// or wss:// URL", rest[0])
	}
	switch u.Scheme { // a page's URL works too
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	}
	if u.Path == "" {
		u.Path = "/"
	}
	if o.count < 1 {
		return nil, bad("-n must be at least 1")
	}
	o.url = u
	return o, nil
}

// Run is `wssproxy probe`: the seeds' browser test from a terminal,
// with a diagnosis at each step.
// Its usage errors exit 1, which is probeUsage.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseProbe(args, stdout)
	if err != nil {
		return err
	}
	return probe(ctx, o, stdout)
}

func probe(ctx context.Context, o *probeOptions, stdout io.Writer) error {
	p := &prober{o: o, rep: &probeReport{URL: o.url.String()}, out: stdout}
	code := p.run(ctx)
	p.rep.Exit, p.rep.OK = code, code == probeOK
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(p.rep)
	} else if code != probeOK {
		fmt.Fprintf(stdout, "\nFAIL: %s\n", p.rep.Problem)
	} else if len(p.rep.Warnings) > 0 {
		fmt.Fprintf(stdout, "\nOK: the round trip works, but only past -insecure: %s\n", strings.Join(p.rep.Warnings, "; "))
	} else {
		fmt.Fprintln(stdout, "\nOK: the round trip works")
	}
	if code == probeOK {
		return nil
	}
	return &cli.ExitError{Code: code}
}

type prober struct {
	o    *probeOptions
	rep  *probeReport
	out  io.Writer
	host string // the name the certificate must cover
	port string
	addr string // ip:port connected to
}

// step records one step and prints it as it completes.
func (p *prober) step(name string, start time.Time, ok bool, detail map[string]string, lines ...string) {
	s := probeStep{Step: name, OK: ok, MS: msSince(start), Detail: detail, Lines: lines}
	p.rep.Steps = append(p.rep.Steps, s)
	if p.o.json {
		return
	}
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	fmt.Fprintf(p.out, "%s %-9s %7.1f ms", mark, name, s.MS)
	keys := make([]string, 0, len(detail))
	for k := range detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(p.out, "  %s=%s", k, detail[k])
	}
	fmt.Fprintln(p.out)
	for _, l := range lines {
		fmt.Fprintln(p.out, "             "+l)
	}
}

func (p *prober) fail(code int, problem string) int {
	p.rep.Problem = problem
	return code
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func (p *prober) run(ctx context.Context) int {
	u := p.o.url
	p.host, p.port = u.Hostname(), u.Port()
	secure := u.Scheme == "wss"
	if p.port == "" {
		p.port = urlport.Default(u.Scheme)
	}

	// 1. DNS.
	start := time.Now()
	var ips []string
	if p.o.resolve != "" {
		h, ip, ok := strings.Cut(p.o.resolve, ":")
		if !ok || net.ParseIP(ip) == nil || !strings.EqualFold(h, p.host) {
			return p.fail(probeUsage, fmt.Sprintf("-resolve wants %s:IP, got %q", p.host, p.o.resolve))
		}
		ips = []string{ip}
	} else if ip := net.ParseIP(p.host); ip != nil {
		ips = []string{p.host}
	} else {
		dctx, cancel := context.WithTimeout(ctx, p.o.timeout)
		resolver := p.o.resolver
		if resolver == nil {
			resolver = net.DefaultResolver
		}
		addrs, err := resolver.LookupHost(dctx, p.host)
		cancel()
		if err != nil {
			p.step("dns", start, false, map[string]string{"name": p.host})
			return p.fail(probeDNS, fmt.Sprintf("%s does not resolve (%v): check the DNS record, or test with -resolve %s:IP", p.host, err, p.host))
		}
		ips = addrs
	}
	p.step("dns", start, true, map[string]string{"name": p.host, "addresses": strings.Join(ips, ",")})
	if net.ParseIP(p.host) != nil && secure {
		fmt.Fprintln(p.out, "             note: certificates are issued for names; browsers connect by name, not IP")
	}

	// 2. TCP.
	start = time.Now()
	p.addr = net.JoinHostPort(ips[0], p.port)
	conn, err := (&net.Dialer{Timeout: p.o.timeout}).DialContext(ctx, "tcp", p.addr)
	if err != nil {
		p.step("tcp", start, false, map[string]string{"addr": p.addr})
		return p.fail(probeTCP, dialProblem(err, ips[0], p.port, p.o.timeout))
	}
	p.step("tcp", start, true, map[string]string{"addr": p.addr})
	conn.Close()

	var tlsCfg *tls.Config
	if secure {
		var code int
		if tlsCfg, code = p.checkTLS(ctx); code != probeOK {
			return code
		}
	}
	return p.checkWebSocket(ctx, tlsCfg)
}

// dialProblem says, in one line a person can act on, why a TCP connection
// to ip and port failed: by the error the system returned, since a refused
// port, a network with no route and a silent firewall need different fixes.
func dialProblem(err error, ip, port string, timeout time.Duration) string {
	addr := net.JoinHostPort(ip, port)
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("port %s refused on %s: is wssproxy running, or a firewall or another server in the way?", port, ip)
	case errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("network unreachable: this machine has no route to %s (an IPv6 address on a machine without IPv6? a VPN or interface down?)", ip)
	case errors.Is(err, syscall.EHOSTUNREACH):
		return fmt.Sprintf("host unreachable: nothing answers for %s on its network (the machine is down, or a firewall rejects the connection)", ip)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer from %s within %v: is a firewall dropping packets to port %s?", addr, timeout, port)
	}
	return fmt.Sprintf("cannot connect to %s: %v", addr, err)
}
