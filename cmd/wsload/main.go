// Command wsload is a WebSocket load generator for wssproxy and whatever
// else speaks ws:// or wss://: point it at a proxy, a peer proxy, or a
// backend directly, and compare.
//
//	wsload -mode rtt        -url wss://127.0.0.1:8443/wss -c 100 -size 32 -d 10s
//	wsload -mode throughput -url wss://127.0.0.1:8443/wss -c 4 -size 65536 -window 4
//	wsload -mode idle       -url wss://127.0.0.1:8443/wss -n 9000 -hold 20s
//	wsload -mode idle       -url wss://127.0.0.1:8443/wss -steps 1000,5000,9000 -hold 10s
//	wsload -mode handshake  -url wss://127.0.0.1:8443/wss -c 4 -d 10s
//	wsload -mode idle -h2   -url wss://127.0.0.1:8443/wss -n 1000 -streams 100
//
// Each run prints one JSON line and one line for people. With -pids it also
// reads the CPU time and RSS of those processes (and of their children, so
// nginx's or HAProxy's master PID covers its workers) before and after the
// measured window, and reports the cost per message, per MB, per handshake
// and per idle connection; with -steps the idle mode grows the number held
// in steps and reports RSS per connection at each. With -h2 every mode opens
// its WebSockets as streams of HTTP/2 connections (RFC 8441), -streams to a
// connection, as a browser does on a page's connection: handshakes are then
// new streams on open connections.
//
// Every run is bounded: -d and -hold at most 10 minutes, -n at most 19,000
// connections (this machine allows 20,000 open files per process). It
// connects only to the URL it is given; -sources spreads idle connections
// over 127.0.0.x addresses and so needs a loopback target.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
}

// options are a run's flags after checking.
type options struct {
	mode     string
	target   *url.URL
	conns    int
	size     int
	duration time.Duration
	warmup   time.Duration
	count    int
	steps    []int // idle: counts to hold in turn; the last is count
	hold     time.Duration
	sources  int
	window   int
	resume   bool
	h2       bool
	streams  int
	rate     float64 // rtt: round trips a second over all connections; 0: as fast as they go
	pids     []int
	dialer   *dialer
}

const (
	maxDuration = 10 * time.Minute
	maxConns    = 19000
)

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("wsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o        options
		rawURL   string
		caFile   string
		insecure bool
		name     string
		pids     string
		curves   string
		steps    string
	)
	fs.StringVar(&o.mode, "mode", "rtt", "rtt, throughput, idle or handshake")
	fs.StringVar(&rawURL, "url", "wss://127.0.0.1:8443/wss", "ws:// or wss:// URL to load")
	fs.IntVar(&o.conns, "c", 0, "connections (rtt 100, throughput 4), or concurrent openers (idle 64, handshake 4)")
	fs.IntVar(&o.size, "size", 0, "message size in bytes (32; throughput 65536)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured time for rtt, throughput and handshake")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before -d starts")
	fs.IntVar(&o.count, "n", 1000, "idle: connections to open and hold")
	fs.StringVar(&steps, "steps", "", "idle: hold 1000, then 5000, … connections in turn (e.g. 1000,5000,9000), RSS read at each; replaces -n")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "idle: how long to hold them (at each of -steps) before checking each still echoes")
	fs.IntVar(&o.sources, "sources", 8, "idle: spread connections over 127.0.0.1 … 127.0.0.N (loopback targets)")
	fs.IntVar(&o.window, "window", 4, "throughput: messages in flight per connection")
	fs.BoolVar(&o.h2, "h2", false, "open each WebSocket as a stream of an HTTP/2 connection (RFC 8441, as browsers do), -streams per connection; wss:// only")
	fs.Float64Var(&o.rate, "rate", 0, "rtt: round trips a second over all connections, evenly paced (0: each connection as fast as it can)")
	fs.IntVar(&o.streams, "streams", 100, "-h2: streams per HTTP/2 connection")
	fs.BoolVar(&o.resume, "resume", false, "handshake: allow TLS session resumption (default: a full handshake each time)")
	fs.StringVar(&caFile, "ca", "", "PEM file of roots to trust for wss:// (default: the system's)")
	fs.BoolVar(&insecure, "insecure", false, "do not verify the server's certificate")
	fs.StringVar(&name, "server-name", "", "TLS server name to send and verify (default: the URL's host)")
	fs.StringVar(&curves, "curves", "", "TLS key exchanges to offer, e.g. X25519 (default: Go's, X25519MLKEM768 first)")
	fs.StringVar(&pids, "pids", "", "comma-separated PIDs whose CPU and RSS (with their children's) to report")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("-url: want ws://host:port/path or wss://…, got %q", rawURL)
	}
	o.target = u
	defaults := map[string][2]int{"rtt": {100, 32}, "throughput": {4, 65536}, "idle": {64, 32}, "handshake": {4, 32}}
	d, ok := defaults[o.mode]
	if !ok {
		return nil, fmt.Errorf("-mode: want rtt, throughput, idle or handshake, got %q", o.mode)
	}
	if o.conns == 0 {
		o.conns = d[0]
	}
	if o.size == 0 {
		o.size = d[1]
	}
	switch {
	case o.conns < 1 || o.conns > maxConns:
		return nil, fmt.Errorf("-c: want 1 to %d, got %d", maxConns, o.conns)
	case o.count < 1 || o.count > maxConns:
		return nil, fmt.Errorf("-n: want 1 to %d (open files are limited per process), got %d", maxConns, o.count)
	case o.size < 1 || o.size > 256<<20:
		return nil, fmt.Errorf("-size: want 1 byte to 256 MiB, got %d", o.size)
	case o.duration <= 0 || o.duration > maxDuration, o.hold < 0 || o.hold > maxDuration, o.warmup < 0 || o.warmup > maxDuration:
		return nil, fmt.Errorf("-d, -hold and -warmup: want at most %v", maxDuration)
	case o.window < 1 || o.window > 1024:
		return nil, fmt.Errorf("-window: want 1 to 1024, got %d", o.window)
	case o.rate < 0 || o.rate > 1e6:
		return nil, fmt.Errorf("-rate: want 0 to 1000000 round trips a second, got %v", o.rate)
	case o.streams < 1 || o.streams > 10000:
		return nil, fmt.Errorf("-streams: want 1 to 10000, got %d", o.streams)
	case o.h2 && u.Scheme != "wss":
		return nil, fmt.Errorf("-h2: WebSockets over HTTP/2 need a wss:// URL (HTTP/2 is negotiated in TLS), got %q", rawURL)
	case o.sources < 1 || o.sources > 254:
		return nil, fmt.Errorf("-sources: want 1 to 254, got %d", o.sources)
	}
	if o.mode == "idle" && o.sources > 1 && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("-sources %d spreads over 127.0.0.x and needs a loopback target; use -sources 1 for %s", o.sources, u.Hostname())
	}
	if err := o.parseSteps(fs, steps); err != nil {
		return nil, err
	}
	for _, p := range strings.FieldsFunc(pids, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-pids: %q is not a PID", p)
		}
		o.pids = append(o.pids, n)
	}

	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: insecure, NextProtos: []string{"http/1.1"}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca: no PEM certificates in %s", caFile)
		}
	}
	for _, name := range strings.FieldsFunc(curves, func(r rune) bool { return r == ',' || r == ' ' }) {
		id, ok := curveIDs[name]
		if !ok {
			return nil, fmt.Errorf("-curves: unknown %q (want X25519MLKEM768, X25519, P256, P384 or P521)", name)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if o.resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	o.dialer = &dialer{target: u, tls: cfg, net: net.Dialer{Timeout: 10 * time.Second}}
	if o.h2 {
		o.dialer.h2 = &h2pool{d: o.dialer, per: o.streams}
	}
	return &o, nil
}

// parseSteps sets o.steps and o.count from -steps: increasing counts, each
// within maxConns. Without -steps the one step is -n.
func (o *options) parseSteps(fs *flag.FlagSet, steps string) error {
	if steps == "" {
		o.steps = []int{o.count}
		return nil
	}
	if o.mode != "idle" {
		return fmt.Errorf("-steps: only for -mode idle")
	}
	nSet := false
	fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if nSet {
		return errors.New("-n and -steps: give one (-steps ends at the number held)")
	}
	for _, f := range strings.Split(steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxConns {
			return fmt.Errorf("-steps: want counts from 1 to %d, got %q", maxConns, f)
		}
		if len(o.steps) > 0 && n <= o.steps[len(o.steps)-1] {
			return fmt.Errorf("-steps: want increasing counts, got %s", steps)
		}
		o.steps = append(o.steps, n)
	}
	o.count = o.steps[len(o.steps)-1]
	return nil
}

var curveIDs = map[string]tls.CurveID{
	"X25519MLKEM768": tls.X25519MLKEM768, "X25519": tls.X25519,
	"P256": tls.CurveP256, "P384": tls.CurveP384, "P521": tls.CurveP521,
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.dialer.h2 != nil {
		defer o.dialer.h2.close()
	}
	var r *result
	switch o.mode {
	case "rtt":
		r, err = runRTT(ctx, o)
	case "throughput":
		r, err = runThroughput(ctx, o)
	case "idle":
		r, err = runIdle(ctx, o)
	case "handshake":
		r, err = runHandshake(ctx, o)
	}
	if err != nil {
		return err
	}
	line, _ := json.Marshal(r)
	fmt.Fprintf(stdout, "%s\n%s\n", line, r.human())
	if r.Errors > 0 {
		return fmt.Errorf("%d errors, first: %s", r.Errors, r.FirstError)
	}
	return nil
}
