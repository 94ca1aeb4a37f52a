// Command wssproxy terminates TLS for WebSocket servers: it takes wss://
// connections, matches path routes such as /wss, and tunnels each upgraded
// connection to a plain ws:// backend, with X-Real-IP set from the client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var exit *exitError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
	case errors.As(err, &exit):
		os.Exit(exit.code) // already reported
	default:
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "wssproxy:", line)
		}
		os.Exit(1)
	}
}

// defaultBackend is the embedded default's backend: where Workerman,
// GatewayWorker and most ws servers in the seeds' FAQ listen.
const defaultBackend = "127.0.0.1:8282"

// options are the command line.
type options struct {
	config      string
	check       bool
	demo        bool
	listen      string
	demoBackend string
	signal      string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("wssproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "configuration `file` (TOML); without it, the embedded default:\nlisten on :8443 with a self-signed certificate, route /wss to ws://127.0.0.1:8282")
	fs.BoolVar(&o.check, "t", false, "check the configuration and exit, like nginx -t")
	fs.BoolVar(&o.demo, "demo", false, "run the embedded default with a demo echo backend and a test page at https://localhost:8443/")
	fs.StringVar(&o.listen, "listen", "", "TLS listen `address`, overriding the configuration's listen")
	fs.StringVar(&o.demoBackend, "demo-backend", defaultBackend, "`address` of the -demo echo backend")
	fs.StringVar(&o.signal, "s", "", "send `signal` to the running wssproxy named by the configuration's pid_file:\nreload (re-read configuration and certificates) or stop (graceful shutdown)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: wssproxy [-config FILE] [-t] [-s reload|stop] [-demo] [-listen ADDR]\n       wssproxy probe [flags] wss://host/path   (wssproxy probe -h)\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	switch {
	case o.demo && o.config != "":
		return nil, errors.New("-demo runs the embedded default; it does not take -config")
	case o.check && o.config == "":
		return nil, errors.New("-t needs -config FILE")
	case o.signal != "" && o.signal != "reload" && o.signal != "stop":
		return nil, fmt.Errorf("-s %s: the signals are reload and stop", o.signal)
	case o.signal != "" && o.config == "":
		return nil, errors.New("-s needs -config FILE, whose pid_file names the running process")
	}
	if o.listen != "" {
		if err := checkAddr(o.listen); err != nil {
			return nil, fmt.Errorf("-listen: %w", err)
		}
	}
	return &o, nil
}

// defaultConfig is what wssproxy does with no file: the seeds' nginx block.
func defaultConfig() *fileConfig {
	return &fileConfig{
		Config: proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + defaultBackend}}},
		Admin:  adminSection{Listen: defaultAdmin},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "probe" {
		return runProbe(ctx, args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.signal != "" {
		return signalRunning(o)
	}
	fc, err := o.load()
	if err != nil {
		return err
	}
	if o.check {
		fmt.Fprintf(stdout, "wssproxy: configuration file %s test is successful\n", o.config)
		return nil
	}
	r := &runner{o: o, errc: make(chan error, 1)}
	var out io.Writer = stderr
	if fc.LogFile != "" {
		lf, err := openLogFile(fc.LogFile)
		if err != nil {
			return fmt.Errorf("log_file: %w", err)
		}
		defer lf.Close()
		r.logFile, out = lf, lf
	}
	r.log = newLogger(fc.LogFormat, out, &r.level)
	defer r.bg.Wait()
	return r.serve(ctx, fc)
}

// load reads the configuration (or takes the embedded default) and applies
// the flags that override it.
func (o *options) load() (*fileConfig, error) {
	fc := defaultConfig()
	if o.config != "" {
		var err error
		if fc, err = loadConfig(o.config); err != nil {
			return nil, err
		}
	}
	if o.listen != "" {
		fc.Listen = o.listen
	}
	if fc.Listen == "" {
		fc.Listen = defaultListen
	}
	return fc, nil
}

// logRoute logs a route and warns when its backend is not reachable now:
// the most common first-day problem is a backend that is not running.
func logRoute(ctx context.Context, log *slog.Logger, i int, r proxy.Route) {
	target := r.Backend
	if r.Static != "" {
		target = "static " + r.Static
	}
	log.Info("route", "n", i+1, "host", r.Host, "path", r.Path, "to", target)
	if r.Backend == "" {
		return
	}
	u, err := urlHostPort(r.Backend)
	if err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", u)
	if err != nil {
		log.Warn("backend not reachable now; handshakes will get 502 until it is", "backend", r.Backend, "error", err)
		return
	}
	c.Close()
}
