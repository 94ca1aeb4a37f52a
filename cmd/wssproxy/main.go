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
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/gctune"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/importconf"
	"github.com/wssproxy/wssproxy/internal/logfile"
	"github.com/wssproxy/wssproxy/internal/probe"
	"github.com/wssproxy/wssproxy/internal/suggest"
	"github.com/wssproxy/wssproxy/internal/xconnect"
	"github.com/wssproxy/wssproxy/proxy"
)

func main() {
	// GODEBUG for WebSockets over HTTP/2 (internal/xconnect)
	xconnect.Reexec(func() (bool, bool) { return servesH2WebSockets(os.Args[1:]) })
	gctune.Start() // here, not in run: tests that call run keep their own GC
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, func() {
		// Shutting down: a second Ctrl-C ends the process at once, but a
		// second SIGTERM (Kubernetes sends one after a preStop hook that
		// began the drain with -s stop) must not cut the drain short.
		signal.Ignore(syscall.SIGTERM)
		stop()
	})
	os.Exit(report(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// report prints what run returned for a person at a terminal and returns
// the exit code: every line of an error prefixed with "wssproxy:", a
// usage error followed by a hint.
func report(err error, stderr io.Writer) int {
	var exit *cli.ExitError
	var usage *cli.UsageError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &exit):
		return exit.Code // already reported
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v\n%s: see '%s -h' for usage\n", usage.Cmd, usage.Err, usage.Cmd, usage.Cmd)
		return 1
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(stderr, "wssproxy:", line)
	}
	return 1
}

// A subcommand is `wssproxy NAME [args…]`, for anything but serving. To
// add one, add it to commands: run dispatches to it and -h lists it. Its
// function gets the arguments after NAME and parses its flags with
// cli.ParseArgs (a FlagSet named "wssproxy NAME"), so that its -h exits 0 and a
// bad flag prints one line and a hint.
type subcommand struct {
	name    string
	usage   string // arguments, for the usage line
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands are the subcommands. (A function, not a variable, so that a
// subcommand may call run without an initialisation cycle.)
func commands() []subcommand {
	return []subcommand{
		{"probe", "[flags] wss://host[:port]/path", "check a WebSocket endpoint step by step, as a browser reaches it, and say what to fix", probe.Run},
		{"health", "[-admin ADDR] [-path /readyz]", "exit 0 when the admin /healthz (or -path) answers 200: a container's HEALTHCHECK", health.Run},
		{"tunnels", "[-admin ADDR] [-route R] [-close ID]", "list the open WebSocket tunnels as a table, or close one", admin.RunTunnels},
		{"import", "[-o FILE [-f]] nginx.conf|httpd.conf", "turn an nginx or Apache httpd configuration into wssproxy's, saying on stderr what changed", importconf.Run},
	}
}

// actionFlags do something once instead of saying what to serve: they are
// not read from the environment.
var actionFlags = []string{"t", "s", "print-config", "version"}

// options are the command line.
type options struct {
	cfg         config.Flags
	check       bool
	demo        bool
	demoBackend string
	signal      string
	printConfig bool
	version     bool
}

func parseFlags(args []string, stdout io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("wssproxy", flag.ContinueOnError)
	o.cfg.Register(fs)
	fs.BoolVar(&o.check, "t", false, "check the configuration that the same flags and environment would serve, and exit, like nginx -t")
	fs.BoolVar(&o.demo, "demo", false, "run the embedded default with a demo echo backend and a test page at https://localhost:8443/")
	fs.StringVar(&o.demoBackend, "demo-backend", config.DefaultBackend, "`address` of the -demo echo backend")
	fs.StringVar(&o.signal, "s", "", "send `signal` to the running wssproxy named by the configuration's pid_file:\nreload (re-read configuration and certificates), stop (graceful shutdown),\nor upgrade (start the binary at its path on the same sockets, then drain)")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration (file, flags and environment) as TOML and exit")
	fs.BoolVar(&o.version, "version", false, "print the version, the commit it was built from and the Go version, and exit")
	fs.Usage = func() { usage(fs.Output(), fs) }
	if err := cli.ParseArgs(fs, args, stdout); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return &cli.UsageError{Cmd: "wssproxy", Err: fmt.Errorf(format, args...)}
	}
	if fs.NArg() > 0 {
		var names []string
		for _, c := range commands() {
			names = append(names, c.name)
		}
		if near := suggest.Nearest(names, fs.Arg(0)); near != "" && fs.NArg() == len(args) {
			return nil, bad("unexpected argument %q (did you mean the command %s?)", fs.Arg(0), near)
		}
		return nil, bad("unexpected argument %q (flags start with -; the commands are %s)", fs.Arg(0), commandNames())
	}
	// Every flag that says what to serve can come from the environment
	// (config.EnvName); the command line wins.
	o.cfg.Given = config.Given(fs)
	if err := config.SetFromEnv(fs, o.cfg.Given, actionFlags...); err != nil {
		return nil, &cli.UsageError{Cmd: "wssproxy", Err: err}
	}
	if err := o.cfg.Check(); err != nil {
		return nil, &cli.UsageError{Cmd: "wssproxy", Err: err}
	}
	_, routes := o.cfg.Given["route"]
	_, cert := o.cfg.Given["cert"]
	_, acme := o.cfg.Given["acme"]
	switch {
	case o.demo && (routes || cert || acme):
		return nil, bad("-demo runs its own route and certificate; it does not take -route, -cert or -acme")
	case o.demo && o.cfg.File != "":
		return nil, bad("-demo runs the embedded default; it does not take -config")
	case o.check && o.printConfig:
		return nil, bad("-t and -print-config: choose one")
	case o.signal != "" && o.signal != "reload" && o.signal != "stop" && o.signal != "upgrade":
		return nil, bad("-s %s: the signals are reload, stop and upgrade", o.signal)
	case o.signal != "" && o.cfg.File == "" && o.cfg.PidFile == "":
		return nil, bad("-s needs -pid-file FILE, or -config FILE whose pid_file names the running process")
	}
	if o.demo {
		o.cfg.Demo = o.demoBackend
	}
	return &o, nil
}

func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// usage is -h: how to run wssproxy, its commands, flags and variables.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: wssproxy [flags]                  serve: -config FILE, or the embedded default\n")
	fmt.Fprintf(w, "       wssproxy -t [flags]               check what the same flags and environment would serve\n")
	fmt.Fprintf(w, "       wssproxy -s SIGNAL [flags]        signal the running wssproxy (through pid_file):\n")
	fmt.Fprintf(w, "                                         reload, stop, or upgrade (the binary at its path takes over)\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "       wssproxy %s %s\n", c.name, c.usage)
	}
	fmt.Fprintf(w, "\nCommands (wssproxy COMMAND -h for each):\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nEnvironment: each of these sets its flag; the command line wins.\n")
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(actionFlags, f.Name) {
			return
		}
		fmt.Fprintf(w, "  %-26s -%s\n", config.EnvName(f.Name), f.Name)
	})
	fmt.Fprintf(w, "%s holds one or more routes, separated by spaces:\n  %s=\"/wss=ws://127.0.0.1:8282 /api=http://127.0.0.1:8080\"\n",
		config.EnvName("route"), config.EnvName("route"))
}

// releaseVersion is the release this binary is, stamped by the release
// build (.ci/release, the Dockerfile's VERSION) with
// -ldflags "-X main.releaseVersion=v0.1.0". Empty otherwise.
var releaseVersion string

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		for _, c := range commands() {
			if args[0] == c.name {
				return c.run(ctx, args[1:], stdout, stderr)
			}
		}
	}
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	switch {
	case o.version:
		fmt.Fprintln(stdout, cli.Version(releaseVersion))
		return nil
	case o.signal != "":
		return signalRunning(o)
	}
	var demo sync.WaitGroup
	defer demo.Wait()
	if o.demo && !o.check && !o.printConfig {
		addr, stopDemo, err := startDemoBackend(o.demoBackend, &demo)
		if err != nil {
			return err
		}
		defer stopDemo()
		o.cfg.Demo = addr // the routes go to the port it got
	}
	l, err := config.Load(&o.cfg)
	if err != nil {
		return err
	}
	c, err := compile(l)
	switch {
	case err != nil:
		return err
	case o.check:
		if err := bindCheck(ctx, c, stderr); err != nil {
			return err
		}
		if err := c.checkCA(ctx, func(err error) { fmt.Fprintf(stderr, "wssproxy: warning: %v\n", err) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wssproxy: %s test is successful\n", o.cfg.Sources(actionFlags...))
		return nil
	case o.printConfig:
		return config.Print(stdout, &l.File)
	}
	r := &runner{o: o, errc: make(chan error, 1)}
	var out io.Writer = stderr
	if l.LogFile != "" {
		lf, err := logfile.Open(l.LogFile)
		if err != nil {
			return fmt.Errorf("log_file: %w", err)
		}
		defer lf.Close()
		r.logFile, out = lf, lf
	}
	r.log = newLogger(l.LogFormat, out, &r.level)
	defer r.bg.Wait()
	return r.serve(ctx, c)
}

// logRoute logs a route and warns when one of its backends is not
// reachable now (proxy.Server.Unreachable, the dial /readyz makes): the
// most common first-day problem is a backend that is not running.
func logRoute(ctx context.Context, log *slog.Logger, srv *proxy.Server, i int, r proxy.Route) {
	target := strings.Join(r.Entries(), ", ")
	if r.Static != "" {
		target = "static " + r.Static
	}
	log.Info("route", "n", i+1, "host", r.Host, "path", r.Path, "to", target)
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for _, b := range srv.Unreachable(dctx, i) {
		log.Warn("backend not reachable now; handshakes will get 502 until it is", "backend", b.Backend, "error", b.Err)
	}
}
