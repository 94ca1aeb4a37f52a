// Package probe is `wssproxy probe`: a diagnostic WebSocket client that
// checks an endpoint step by step (DNS, TCP, TLS and the certificate
// chain, TLS 1.2, the upgrade, round trips) as a browser reaches it, and
// says what to fix. cmd/wssproxy lists Run in its subcommand table.
package probe

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/coder/websocket"
	"github.com/wssproxy/wssproxy/internal/certpool"
	"github.com/wssproxy/wssproxy/internal/cli"
)

// Probe exit codes: each kind of failure has its own, so scripts can act
// on them. Documented in the README's Troubleshooting section.
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
		p.port = map[bool]string{true: "443", false: "80"}[secure]
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

// checkTLS performs the TLS handshake, reports the chain and why it does
// or does not verify, and whether TLS 1.2 is accepted.
func (p *prober) checkTLS(ctx context.Context) (*tls.Config, int) {
	roots, err := p.roots()
	if err != nil {
		return nil, p.fail(probeUsage, "-ca: "+err.Error())
	}
	start := time.Now()
	cfg := &tls.Config{ServerName: p.host, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}
	cs, err := p.handshake(ctx, cfg)
	if err != nil {
		p.step("tls", start, false, nil)
		if strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
			return nil, p.fail(probeTLS, fmt.Sprintf("%s speaks plain HTTP, not TLS: use ws:// for it, or put wssproxy in front", p.addr))
		}
		return nil, p.fail(probeTLS, fmt.Sprintf("TLS handshake with %s failed: %v", p.addr, err))
	}
	detail := map[string]string{
		"version": tls.VersionName(cs.Version),
		"cipher":  tls.CipherSuiteName(cs.CipherSuite),
		"alpn":    cs.NegotiatedProtocol,
	}
	var lines []string
	for i, c := range cs.PeerCertificates {
		lines = append(lines, certLine(i, c))
	}
	problem := verifyProblem(cs.PeerCertificates, p.host, roots)
	if problem != "" && !p.o.insecure {
		p.step("tls", start, false, detail, lines...)
		return nil, p.fail(probeCertificate, problem+" (-insecure to go on anyway)")
	}
	if problem != "" {
		// -insecure: the handshake worked; what it skipped is a warning.
		p.rep.Warnings = append(p.rep.Warnings, problem)
		lines = append(lines, "warning: "+problem+" (not verified: -insecure)")
	}
	p.step("tls", start, true, detail, lines...)

	// TLS 1.2: what WeChat mini programs and older clients need.
	start = time.Now()
	_, err = p.handshake(ctx, &tls.Config{ServerName: p.host, InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	p.step("tls1.2", start, err == nil, map[string]string{"accepted": fmt.Sprint(err == nil)})
	if err != nil {
		p.rep.Problem = "TLS 1.2 is refused: WeChat mini programs and older clients need it; allow it (wssproxy: min_version = \"1.2\")"
	}

	out := &tls.Config{ServerName: p.host, RootCAs: roots, NextProtos: []string{"http/1.1"}}
	if problem != "" {
		out.InsecureSkipVerify = true // -insecure: reported above
	}
	return out, probeOK
}

func (p *prober) roots() (*x509.CertPool, error) {
	if p.o.ca == "" {
		return x509.SystemCertPool()
	}
	pool, _, err := certpool.ReadFile(p.o.ca)
	return pool, err
}

func (p *prober) handshake(ctx context.Context, cfg *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: p.o.timeout}, Config: cfg}
	hctx, cancel := context.WithTimeout(ctx, p.o.timeout)
	defer cancel()
	c, err := d.DialContext(hctx, "tcp", p.addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// certLine describes one certificate of the chain: its name (the common
// name, or without one its DNS and IP names, as the CA/Browser Forum's
// rules let a leaf have), its issuer, names and expiry.
func certLine(i int, c *x509.Certificate) string {
	names := certNames(c)
	name := c.Subject.CommonName
	if name == "" {
		name = strings.Join(names, " ")
	}
	line := fmt.Sprintf("cert[%d] %s, issued by %s", i, cmp.Or(name, c.Subject.String(), "(no name)"),
		cmp.Or(c.Issuer.CommonName, c.Issuer.String(), "(no name)"))
	if len(names) > 0 {
		line += ", names " + strings.Join(names, " ")
	}
	return line + fmt.Sprintf(", expires %s (%d days)", c.NotAfter.Format("2006-01-02"), int(time.Until(c.NotAfter).Hours()/24))
}

func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// verifyProblem says, in one line a person can act on, why chain does not
// verify for host against roots, or "" when it does.
func verifyProblem(chain []*x509.Certificate, host string, roots *x509.CertPool) string {
	if len(chain) == 0 {
		return "the server sent no certificate"
	}
	leaf := chain[0]
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("certificate expired on %s: renew it (certbot renew, or let wssproxy's ACME do it)", leaf.NotAfter.Format("2006-01-02"))
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("certificate is not valid until %s: check this machine's clock and the server's", leaf.NotBefore.Format("2006-01-02"))
	case leaf.VerifyHostname(host) != nil:
		names := certNames(leaf)
		if len(names) == 0 {
			names = []string{leaf.Subject.CommonName}
		}
		return fmt.Sprintf("certificate is for %s, not %s: connect by a name it covers, or get one for %s", strings.Join(names, ", "), host, host)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	if err == nil {
		return ""
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		if leaf.Subject.String() == leaf.Issuer.String() {
			return "certificate is self-signed: browsers and WeChat refuse it; use one from a CA (wssproxy's [tls.acme])"
		}
		if len(chain) == 1 {
			return fmt.Sprintf("incomplete chain: the server sends only its own certificate, not the intermediate from %q; configure the full chain (fullchain.pem, not cert.pem)", leaf.Issuer.CommonName)
		}
		return fmt.Sprintf("certificate is issued by %q, which is not trusted here: a private CA? (-ca FILE to trust it)", leaf.Issuer.CommonName)
	}
	return "certificate does not verify: " + err.Error()
}

// checkWebSocket sends the opening handshake and then the messages.
func (p *prober) checkWebSocket(ctx context.Context, tlsCfg *tls.Config) int {
	tr := &http.Transport{
		TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: p.o.timeout}).DialContext(ctx, network, p.addr)
		},
	}
	defer tr.CloseIdleConnections()
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: p.o.headers}
	if p.o.subprotocol != "" {
		opts.Subprotocols = []string{p.o.subprotocol}
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, p.o.timeout)
	defer cancel()
	c, resp, err := websocket.Dial(dctx, p.o.url.String(), opts)
	if err != nil {
		if resp == nil {
			p.step("upgrade", start, false, nil)
			return p.fail(probeUpgrade, fmt.Sprintf("the WebSocket handshake failed: %v", err))
		}
		p.step("upgrade", start, false, map[string]string{"status": resp.Status}, headerLines(resp.Header)...)
		return p.fail(probeUpgrade, upgradeProblem(resp, p.o.url.Path))
	}
	defer c.CloseNow()
	detail := map[string]string{"status": resp.Status}
	if sp := c.Subprotocol(); sp != "" {
		detail["subprotocol"] = sp
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		detail["extensions"] = ext
	}
	p.step("upgrade", start, true, detail)

	var rtts []float64
	for i := range p.o.count {
		start = time.Now()
		mctx, cancel := context.WithTimeout(ctx, p.o.timeout)
		err := c.Write(mctx, websocket.MessageText, []byte(p.o.message))
		var reply []byte
		if err == nil {
			_, reply, err = c.Read(mctx)
		}
		cancel()
		if err != nil {
			p.step("message", start, false, map[string]string{"sent": p.o.message})
			if code := websocket.CloseStatus(err); code != -1 {
				return p.fail(probeMessage, fmt.Sprintf("the server closed the connection with %d %s instead of answering", code, code))
			}
			return p.fail(probeMessage, fmt.Sprintf("no reply to %q: %v (does the backend answer this message?)", p.o.message, err))
		}
		rtts = append(rtts, msSince(start))
		if i == 0 {
			p.rep.Reply = string(reply)
			p.step("message", start, true, map[string]string{"sent": p.o.message, "reply": string(reply)})
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	if len(rtts) > 1 {
		slices.Sort(rtts)
		pct := func(q float64) float64 { return rtts[min(len(rtts)-1, int(q*float64(len(rtts))))] }
		p.rep.RTT = &rttStats{N: len(rtts), P50: pct(0.5), P90: pct(0.9), P99: pct(0.99), Max: rtts[len(rtts)-1]}
		if !p.o.json {
			fmt.Fprintf(p.out, "     rtt       n=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms\n", len(rtts), p.rep.RTT.P50, p.rep.RTT.P90, p.rep.RTT.P99, p.rep.RTT.Max)
		}
	}
	if p.rep.Problem != "" { // the round trip works, but not for every client
		return probeTLS12
	}
	return probeOK
}

func headerLines(h http.Header) []string {
	var out []string
	for _, k := range []string{"Server", "X-Wssproxy-Error", "Content-Type", "Sec-Websocket-Version"} {
		if v := h.Get(k); v != "" {
			out = append(out, k+": "+v)
		}
	}
	return out
}

// upgradeProblem explains a refused handshake; wssproxy marks its own
// errors with X-Wssproxy-Error, which tells them from the backend's.
func upgradeProblem(resp *http.Response, path string) string {
	switch kind := resp.Header.Get("X-Wssproxy-Error"); kind {
	case "backend-dial":
		return fmt.Sprintf("wssproxy answered %d: it cannot reach its backend; is the ws server behind it running (and on the address in its route)?", resp.StatusCode)
	case "backend-timeout":
		return fmt.Sprintf("wssproxy answered %d: its backend accepted the connection but did not answer the handshake; is it a WebSocket server?", resp.StatusCode)
	case "no-route":
		return fmt.Sprintf("wssproxy has no route for %s (404): check the path against its [[route]] paths", path)
	case "origin":
		return "wssproxy refused the Origin (403): add it to the route's allowed_origins, or send the page's Origin with -header"
	case "":
	default:
		return fmt.Sprintf("wssproxy refused the handshake: %d %s", resp.StatusCode, kind)
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("the server answered %s, not a WebSocket upgrade: a web server without a WebSocket route for %s (nginx: location %s with proxy_set_header Upgrade)?", resp.Status, path, path)
	case resp.StatusCode >= 500:
		return fmt.Sprintf("the server answered %s: the backend behind it is failing or not running", resp.Status)
	}
	return fmt.Sprintf("the server refused the WebSocket handshake with %s (the backend's answer: authentication, Origin, path?)", resp.Status)
}
