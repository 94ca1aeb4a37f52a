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
	reexecForHTTP2(os.Args[1:]) // GODEBUG for WebSockets over HTTP/2 (xconnect.go)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, func() {
		// Shutting down: a second Ctrl-C ends the process at once, but a
		// second SIGTERM (Kubernetes sends one after a preStop hook that
		// began the drain with -s stop) must not cut the drain short.
		signal.Ignore(syscall.SIGTERM)
		stop()
	})
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
	printConfig bool
	pidFile     string

	// The one-route deployment without a file (flags override the file).
	routes        routeFlags
	cert, key     string
	acme          string // comma-separated hosts
	acmeEmail     string
	acmeAcceptTOS bool
	set           map[string]bool // flags given, on the command line or in the environment
}

// routeFlags is -route, repeatable: PATH=BACKEND.
type routeFlags []proxy.Route

func (r *routeFlags) String() string { return "" }
func (r *routeFlags) Set(v string) error {
	path, backend, ok := strings.Cut(v, "=")
	if !ok || path == "" || backend == "" {
		return fmt.Errorf("want PATH=BACKEND, like /wss=ws://127.0.0.1:8282, got %q", v)
	}
	*r = append(*r, proxy.Route{Path: path, Backend: backend})
	return nil
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
	fs.StringVar(&o.pidFile, "pid-file", "", "pid `file` (overrides pid_file): written while running; read by -s")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration (file, flags and environment) as TOML and exit")
	fs.Var(&o.routes, "route", "a route `PATH=BACKEND`, like /wss=ws://127.0.0.1:8282 (repeatable; replaces the file's routes)")
	fs.StringVar(&o.cert, "cert", "", "certificate chain `file` (PEM, full chain), with -key")
	fs.StringVar(&o.key, "key", "", "private key `file` (PEM) of -cert")
	fs.StringVar(&o.acme, "acme", "", "get certificates by ACME for these `hosts` (comma-separated)")
	fs.StringVar(&o.acmeEmail, "acme-email", "", "`email` for the ACME CA's expiry notices")
	fs.BoolVar(&o.acmeAcceptTOS, "acme-accept-tos", false, "accept the ACME CA's terms of service (required with -acme)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: wssproxy [-config FILE] [-t] [-s reload|stop] [-demo] [-listen ADDR]\n       wssproxy probe [flags] wss://host/path   (wssproxy probe -h)\n       wssproxy health [-admin ADDR]           (exit 0 when /healthz answers)\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	// Every flag can come from the environment: WSSPROXY_ and its name in
	// capitals, dashes as underscores (WSSPROXY_ACME_EMAIL). The command line
	// wins. WSSPROXY_ROUTE holds one or more routes separated by spaces.
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "WSSPROXY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(env)
		if !ok || o.set[f.Name] || envErr != nil {
			return
		}
		values := []string{v}
		if f.Name == "route" {
			values = strings.Fields(v)
		}
		for _, v := range values {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
		}
		o.set[f.Name] = true
	})
	if envErr != nil {
		return nil, envErr
	}
	switch {
	case o.set["demo"] && (o.set["route"] || o.set["cert"] || o.set["acme"]):
		return nil, errors.New("-demo runs its own route and certificate; it does not take -route, -cert or -acme")
	case o.cert != "" && o.key == "":
		return nil, errors.New("-cert needs -key")
	case o.key != "" && o.cert == "":
		return nil, errors.New("-key needs -cert")
	case o.acme == "" && (o.acmeEmail != "" || o.acmeAcceptTOS):
		return nil, errors.New("-acme-email and -acme-accept-tos go with -acme")
	case o.acme != "" && !o.acmeAcceptTOS:
		return nil, errors.New("-acme needs -acme-accept-tos: it says you accept the CA's terms of service")
	case o.check && o.printConfig:
		return nil, errors.New("-t and -print-config: choose one")
	}
	switch {
	case o.demo && o.config != "":
		return nil, errors.New("-demo runs the embedded default; it does not take -config")
	case o.check && o.config == "" && !o.set["route"]:
		return nil, errors.New("-t needs -config FILE (or -route flags) to check")
	case o.signal != "" && o.signal != "reload" && o.signal != "stop":
		return nil, fmt.Errorf("-s %s: the signals are reload and stop", o.signal)
	case o.signal != "" && o.config == "" && o.pidFile == "":
		return nil, errors.New("-s needs -pid-file FILE, or -config FILE whose pid_file names the running process")
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
	if len(args) > 0 && args[0] == "health" {
		return runHealth(ctx, args[1:], stdout, stderr)
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
		what := "configuration file " + o.config
		if o.config == "" {
			what = "configuration from flags"
		}
		fmt.Fprintf(stdout, "wssproxy: %s test is successful\n", what)
		return nil
	}
	if o.printConfig {
		return printConfig(stdout, fc)
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
// the flags that override it, then checks the result.
func (o *options) load() (*fileConfig, error) {
	fc := defaultConfig()
	overridden := o.set["route"] || o.set["cert"] || o.set["acme"] || o.set["listen"]
	if o.config != "" {
		var err error
		if overridden { // the merged result is checked below
			fc, err = loadConfigUnchecked(o.config)
		} else {
			fc, err = loadConfig(o.config)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.listen != "" {
		fc.Listen = o.listen
	}
	if o.pidFile != "" {
		fc.PidFile = o.pidFile
	}
	if len(o.routes) > 0 {
		fc.Routes = append([]proxy.Route(nil), o.routes...)
	}
	if o.cert != "" {
		fc.TLS.Cert, fc.TLS.Key = o.cert, o.key
	}
	if o.acme != "" {
		fc.TLS.ACME.Hosts = strings.Split(o.acme, ",")
		fc.TLS.ACME.Email = o.acmeEmail
		fc.TLS.ACME.AcceptTOS = o.acmeAcceptTOS
	}
	if overridden {
		// The flags changed what the file said: check the result as -t would.
		where := "flags"
		if o.config != "" {
			where = o.config + " with flags"
		}
		var lines []string
		for _, err := range fc.validate() {
			lines = append(lines, where+": "+err.Error())
		}
		if len(lines) > 0 {
			return nil, &configError{lines: lines}
		}
	}
	if fc.Listen == "" {
		fc.Listen = defaultListen
	}
	// [tls] hsts is the TLS listener's, and the proxy writes the responses.
	fc.Config.HSTS = fc.TLS.HSTS
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
