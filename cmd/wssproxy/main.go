// Command wssproxy terminates TLS for WebSocket servers: it takes wss://
// connections, matches path routes such as /wss, and tunnels each upgraded
// connection to a plain ws:// backend, with X-Real-IP set from the client.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
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
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: wssproxy [-config FILE] [-t] [-demo] [-listen ADDR]\n\n")
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
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	fc := defaultConfig()
	if o.config != "" {
		if fc, err = loadConfig(o.config); err != nil {
			return err
		}
	}
	if o.check {
		fmt.Fprintf(stdout, "wssproxy: configuration file %s test is successful\n", o.config)
		return nil
	}
	if o.listen != "" {
		fc.Listen = o.listen
	}
	if fc.Listen == "" {
		fc.Listen = defaultListen
	}
	level, _ := parseLevel(fc.LogLevel) // checked by validate
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var bg sync.WaitGroup // every goroutine run starts, waited for before it returns
	defer bg.Wait()
	if o.demo {
		addr, stopDemo, err := startDemoBackend(o.demoBackend, &bg)
		if err != nil {
			return err
		}
		defer stopDemo()
		fc.Routes = []proxy.Route{
			{Path: "/wss", Backend: "ws://" + addr},
			{Path: "/", Backend: "http://" + addr},
		}
		log.Info("demo echo backend", "addr", addr)
	}

	certs, err := tlsconf.NewManager(fc.TLS, log)
	if err != nil {
		return err
	}
	srv, err := proxy.New(fc.Config, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fc.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("listening", "addr", ln.Addr().String())
	for i, r := range fc.Routes {
		logRoute(ctx, log, i, r)
		if r.Host != "" && !certs.Covers(r.Host) {
			log.Warn("no certificate covers this route's host: clients will see a name mismatch", "route", i+1, "host", r.Host)
		}
	}
	if o.demo {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		log.Info("demo ready: open https://localhost:" + port + "/ and accept the self-signed certificate")
	}

	errc := make(chan error, 2)
	bg.Go(func() { errc <- srv.Serve(tls.NewListener(ln, certs.TLSConfig())) })
	var redirect *http.Server
	if fc.Redirect.Listen != "" {
		rln, err := net.Listen("tcp", fc.Redirect.Listen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("redirect listen: %w", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		redirect = &http.Server{Handler: certs.HTTPHandler(proxy.RedirectHandler(port)), ReadHeaderTimeout: 10 * time.Second}
		log.Info("redirecting to https", "addr", rln.Addr().String())
		bg.Go(func() { errc <- redirect.Serve(rln) })
	} else if len(fc.TLS.ACME.Hosts) > 0 {
		log.Warn("ACME without [redirect] listen: only TLS-ALPN-01 on the TLS port can validate; HTTP-01 needs port 80")
	}

	// Certificates reload when their files change, and on SIGHUP.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	bg.Go(func() { certs.Watch(wctx, time.Second) })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	shutdownTimeout := cmp.Or(fc.ShutdownTimeout, proxy.DefaultShutdownTimeout)
	for running := true; running; {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading certificates")
			certs.Reload() // logs its own failure; the old certificates stay
		case <-ctx.Done():
			log.Info("shutting down", "open_tunnels", srv.OpenTunnels(), "timeout", shutdownTimeout)
			running = false
		case err = <-errc:
			log.Error("server failed", "error", err)
			running = false
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if redirect != nil {
		redirect.Shutdown(sctx)
	}
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("shutdown timeout: closed remaining tunnels", "error", serr)
	}
	log.Info("stopped")
	if err != nil && !errors.Is(err, proxy.ErrShuttingDown) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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
