package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/control"
	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/internal/handover"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/htpasswd"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
	"github.com/wssproxy/wssproxy/internal/logfile"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// runner owns what a running wssproxy has: the proxy, the certificate
// manager of the current configuration, the listeners, and every goroutine
// it starts (bg), which run waits for.
type runner struct {
	o       *options
	log     *slog.Logger
	logFile *logfile.File // nil: logs go to stderr
	level   slog.LevelVar
	bg      sync.WaitGroup
	errc    chan error // the first unexpected listener failure

	fc    *compiled // the configuration being served
	srv   *proxy.Server
	certs atomic.Pointer[tlsconf.Manager]
	// tlsConfig hands each handshake to the current manager's config.
	tlsConfig  *tls.Config
	stopWatch  context.CancelFunc
	tlsLn      *listener
	redirect   *http.Server
	redirectLn *listener
	// listening is the addresses of tlsLn and redirectLn, for the admin
	// handlers' goroutines (a reload replaces the listeners).
	listening atomic.Pointer[health.Listening]
	admin     *http.Server
	history   *admin.History // the dashboard's charts
	adminLn   *listener
	inherit   *handover.Inherited // sockets handed over by the process this one replaces
	metrics   *adminMetrics
	adminAuth atomic.Pointer[htpasswd.File] // admin basic_auth, as last loaded
	started   time.Time
	timeouts  sideTimeouts // of the redirect and admin servers; zero: the defaults
}

// listener is one open listener; retired is set before the runner closes
// it on purpose, so its Serve returning is not a failure.
type listener struct {
	net.Listener
	retired atomic.Bool
}

// SetDeadline and SyscallConn reach the socket, so that a shutdown can
// take the connections queued on it before it closes (proxy's
// acceptdrain.go).
func (l *listener) SetDeadline(t time.Time) error {
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return errors.ErrUnsupported
}

func (l *listener) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := l.Listener.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (r *runner) fail(l *listener, err error) {
	if l.retired.Load() || errors.Is(err, proxy.ErrShuttingDown) || errors.Is(err, http.ErrServerClosed) {
		return
	}
	select {
	case r.errc <- err:
	default:
	}
}

// serve runs the compiled configuration fc until ctx ends or a listener
// fails, reloading it on SIGHUP.
func (r *runner) serve(ctx context.Context, fc *compiled) error {
	sigs := control.Notify() // before anything is logged
	defer sigs.Stop()
	r.inherit = handover.Take(r.log)

	r.level.Set(fc.level)
	if r.o.demo {
		r.log.Info("demo echo backend", "addr", r.o.cfg.Demo)
	}
	certs, err := fc.tls.Manager(r.log)
	if err != nil {
		return fc.Errors(fielderr.Under("tls.", err))
	}
	if err := fc.checkCA(ctx, func(err error) { r.log.Warn("ACME profile not checked", "error", err) }); err != nil {
		return err
	}
	r.certs.Store(certs)
	r.tlsConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return r.certs.Load().TLSConfig(), nil
	}}
	r.srv = fc.proxy.Server(r.log)
	r.started = time.Now()
	reg, err := r.newRegistry()
	if err != nil {
		return err
	}
	if err := r.openListeners(fc); err != nil {
		r.srv.Close()
		return err
	}
	r.fc = fc
	r.adminAuth.Store(fc.adminAuth)
	r.serveTLS(r.tlsLn)
	r.startRedirect()
	r.noteListening()
	r.startAdmin(reg)
	r.startWatch(certs)
	r.describe(ctx, fc)
	if err := control.WritePidFile(fc.PidFile); err != nil {
		r.log.Error("pid_file not written; -s reload will not find this process", "error", err)
	}
	r.inherit.Ready()
	handedOver := false
	defer func() { // the pid_file of the last configuration, unless it names the new process
		if !handedOver {
			control.RemovePidFile(r.fc.PidFile)
		}
	}()

	for running := true; running; {
		select {
		case <-sigs.Reload:
			r.reload(ctx)
		case <-sigs.Upgrade:
			r.log.Info("SIGUSR2: upgrading: starting the binary at this process's path")
			if err := r.upgrade(); err != nil {
				r.log.Error("upgrade failed; this process keeps serving", "error", err)
				continue
			}
			handedOver, running = true, false
		case <-sigs.Reopen:
			if r.logFile == nil {
				r.log.Info("SIGUSR1: logs go to stderr; nothing to reopen")
			} else if err := r.logFile.Reopen(); err != nil {
				r.log.Error("SIGUSR1: reopening log_file failed; still writing the old one", "error", err)
			} else {
				r.log.Info("SIGUSR1: log file reopened", "path", r.logFile.Path())
			}
		case <-ctx.Done():
			r.log.Info("shutting down", "open_tunnels", r.srv.OpenTunnels(), "timeout", r.shutdownTimeout())
			running = false
		case err = <-r.errc:
			r.log.Error("server failed", "error", err)
			running = false
		}
	}
	if handedOver {
		r.handOver(ctx)
		r.stopWatch()
		r.log.Info("stopped: handed over to the new process")
		return nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.shutdownTimeout())
	defer cancel()
	if r.redirect != nil {
		r.redirect.Shutdown(sctx)
	}
	if serr := r.srv.Shutdown(sctx); serr != nil {
		r.log.Warn("shutdown timeout: closed remaining tunnels", "error", serr)
	}
	if r.admin != nil { // last: /readyz says "draining" while tunnels close
		r.admin.Shutdown(sctx)
	}
	r.history.Stop()
	r.stopWatch()
	r.log.Info("stopped")
	return err
}

func (r *runner) shutdownTimeout() time.Duration {
	return cmp.Or(r.fc.ShutdownTimeout, proxy.DefaultShutdownTimeout)
}

// serveTLS serves the TLS listener l.
func (r *runner) serveTLS(l *listener) {
	r.bg.Go(func() { r.fail(l, r.srv.ServeTLS(l, r.tlsConfig)) })
	r.log.Info("listening", "addr", l.Addr().String())
}

// startRedirect serves the port-80 listener, if there is one: ACME HTTP-01
// challenges of the current certificate manager, and a 308 to https.
func (r *runner) startRedirect() {
	if r.redirectLn == nil {
		return
	}
	_, port, _ := net.SplitHostPort(r.tlsLn.Addr().String())
	fallback := proxy.RedirectHandler(port)
	r.redirect = r.sideServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.certs.Load().HTTPHandler(fallback).ServeHTTP(w, req)
	}), 30*time.Second)
	srv, l := r.redirect, r.redirectLn
	// Its connections count against max_client_connections with the TLS
	// listener's.
	bounded := r.srv.LimitListener(l, "redirect", 0)
	r.bg.Go(func() { r.fail(l, srv.Serve(bounded)) })
	r.log.Info("redirecting to https", "addr", l.Addr().String())
}

// noteListening records where the TLS and redirect listeners are, for
// /healthz to say (wssproxy health compares them with what was asked for).
func (r *runner) noteListening() {
	if r.tlsLn == nil {
		return // not serving (a runner that tests reload alone)
	}
	l := &health.Listening{TLS: r.tlsLn.Addr().String()}
	if r.redirectLn != nil {
		l.Redirect = r.redirectLn.Addr().String()
	}
	r.listening.Store(l)
}

// startWatch re-reads m's certificate files when they change.
func (r *runner) startWatch(m *tlsconf.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	r.stopWatch = cancel
	r.bg.Go(func() { m.Watch(ctx, time.Second) })
}

func (r *runner) describe(ctx context.Context, fc *compiled) {
	for i, rt := range fc.Routes {
		logRoute(ctx, r.log, r.srv, i, rt)
		if rt.Host != "" && !r.certs.Load().Covers(rt.Host) {
			r.log.Warn("no certificate covers this route's host: clients will see a name mismatch", "route", i+1, "host", rt.Host)
		}
	}
	if r.o.demo {
		_, port, _ := net.SplitHostPort(r.tlsLn.Addr().String())
		r.log.Info("demo ready: open https://localhost:" + port + "/ and accept the self-signed certificate")
	}
	if len(fc.TLS.ACME.Hosts) > 0 && fc.Redirect.Listen == "" {
		r.log.Warn("ACME without [redirect] listen (-redirect :80): only TLS-ALPN-01 on the TLS port can validate; HTTP-01 needs port 80")
	}
}

// reload re-reads the configuration file and certificates (SIGHUP).
// Everything that can fail is prepared first; a configuration with errors
// changes nothing. New routes, limits, certificates and listeners apply to
// new connections; open tunnels keep running.
func (r *runner) reload(ctx context.Context) {
	if r.o.cfg.File == "" {
		r.log.Info("SIGHUP: no configuration file; reloading certificates")
		r.certs.Load().Reload()
		return
	}
	var tlsLn, redirectLn *listener
	// refuse ends a reload that cannot go ahead, with every error on a
	// line of its own: the listeners it opened are closed, and it counts
	// as a failure.
	refuse := func(err error) {
		for _, l := range []*listener{tlsLn, redirectLn} {
			if l != nil {
				l.Close()
			}
		}
		r.metrics.reloads.WithLabelValues("failure").Inc()
		errs := fielderr.Flatten(err)
		r.log.Error("reload refused: still running the previous configuration", "errors", len(errs))
		for _, e := range errs {
			for _, line := range strings.Split(e.Error(), "\n") {
				r.log.Error("reload refused", "error", line)
			}
		}
	}
	l, err := config.Load(&r.o.cfg)
	if err != nil {
		refuse(err)
		return
	}
	fc, err := compile(l)
	if err != nil {
		refuse(err)
		return
	}
	certs := r.certs.Load()
	newCerts := !reflect.DeepEqual(fc.TLS, r.fc.TLS) || !fc.tls.SameClientCAs(r.fc.tls)
	if newCerts {
		if certs, err = fc.tls.Manager(r.log); err != nil {
			refuse(fc.Errors(fielderr.Under("tls.", err)))
			return
		}
	}
	if fc.Listen != r.fc.Listen {
		ln, err := listenaddr.Listen("listen", fc.Listen)
		if err != nil {
			refuse(err)
			return
		}
		tlsLn = &listener{Listener: ln}
	}
	if fc.Redirect.Listen != r.fc.Redirect.Listen && fc.Redirect.Listen != "" {
		ln, err := listenaddr.Listen("redirect.listen", fc.Redirect.Listen)
		if err != nil {
			refuse(err)
			return
		}
		redirectLn = &listener{Listener: ln}
	}
	// Compiled above; a proxy that is shutting down refuses.
	if err := r.srv.Apply(fc.proxy); err != nil {
		refuse(err)
		return
	}
	// Nothing below fails: commit.
	if newCerts {
		r.stopWatch()
		r.certs.Store(certs)
		r.startWatch(certs)
	} else {
		certs.Install(fc.tls)
	}
	r.level.Set(fc.level)
	if tlsLn != nil { // the new listener serves before the old one closes
		old := r.tlsLn
		r.tlsLn = tlsLn
		r.serveTLS(tlsLn)
		old.retired.Store(true)
		old.Close()
	}
	if fc.Redirect.Listen != r.fc.Redirect.Listen {
		if r.redirect != nil {
			r.redirectLn.retired.Store(true)
			r.redirect.Close()
			r.redirect, r.redirectLn = nil, nil
		}
		r.redirectLn = redirectLn
		r.startRedirect()
	}
	r.noteListening()
	if fc.LogFormat != r.fc.LogFormat || fc.LogFile != r.fc.LogFile {
		r.log.Warn("log_format and log_file changes apply at the next start")
	}
	if fc.PidFile != r.fc.PidFile {
		control.RemovePidFile(r.fc.PidFile)
		control.WritePidFile(fc.PidFile)
	}
	was := r.fc.Admin
	if was.BasicAuth = fc.Admin.BasicAuth; fc.Admin != was { // basic_auth applies now
		r.log.Warn("[admin] changes apply at the next start")
	}
	r.fc = fc
	r.adminAuth.Store(fc.adminAuth) // the file's users, read again
	r.describe(ctx, fc)
	r.metrics.reloads.WithLabelValues("success").Inc()
	r.log.Info("configuration reloaded", "routes", len(fc.Routes), "open_tunnels", r.srv.OpenTunnels())
}

// signalRunning sends -s's signal to the process in the configuration's
// pid_file, like nginx -s.
func signalRunning(o *options) error {
	pidFile := o.cfg.PidFile
	if pidFile == "" {
		// The configuration the running process would reload: refuse to
		// signal it when it has errors, and find its pid_file.
		l, err := config.Load(&o.cfg)
		if err != nil {
			return err
		}
		fc, err := compile(l)
		if err != nil {
			return err
		}
		if fc.PidFile == "" {
			return fmt.Errorf("-s %s: %s has no pid_file, so the running process cannot be found", o.signal, o.cfg.File)
		}
		pidFile = fc.PidFile
	}
	return control.Send(o.signal, pidFile)
}
