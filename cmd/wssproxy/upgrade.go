package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/wssproxy/wssproxy/internal/handover"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
)

// Binary upgrades without dropping a tunnel (SIGUSR2, or -s upgrade): the
// sockets pass to the new process by internal/handover; what is here is
// the runner's side of it. The old process stops accepting only once the
// new one is ready, then closes its tunnels with 1012 Service Restart
// spread over upgrade_drain and exits when the last one has ended.

// upgradeReadyTimeout bounds how long the old process waits for the new one.
const upgradeReadyTimeout = 30 * time.Second

// listen opens a TCP listener for role on addr: the inherited socket when
// the old process had one for that role on the same configured address,
// otherwise a new one.
func (r *runner) listen(role, key, addr string) (net.Listener, error) {
	return r.inherit.Listen(role, addr, func() (net.Listener, error) { return listenaddr.Listen(key, addr) })
}

// openListeners opens the listeners fc names, before any serves: one that
// cannot be opened fails the start, and an upgrade's before the new
// process has taken a connection from the sockets it shares with the old
// one. Except admin.listen at a start, which is logged: the proxy matters
// more than its dashboard. In an upgrade the old process still serves it,
// and a new one without it would leave nothing to answer /healthz.
func (r *runner) openListeners(fc *compiled) error {
	var opened []*listener
	open := func(role, key, addr string) (*listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := r.listen(role, key, addr)
		if err != nil {
			return nil, err
		}
		opened = append(opened, &listener{Listener: ln})
		return opened[len(opened)-1], nil
	}
	var err error
	if r.tlsLn, err = open("tls", "listen", fc.Listen); err == nil {
		r.redirectLn, err = open("redirect", "redirect.listen", fc.Redirect.Listen)
	}
	if err == nil {
		if r.adminLn, err = open("admin", "admin.listen", fc.Admin.Listen); err != nil && r.inherit == nil {
			r.log.Error("admin listener not started; the proxy runs without /metrics and health endpoints", "error", err)
			err = nil
		}
	}
	if err != nil {
		for _, l := range opened {
			l.Close()
		}
		r.tlsLn, r.redirectLn, r.adminLn = nil, nil, nil
	}
	return err
}

// upgrade starts the binary at this process's path with its listeners and
// waits until it is ready. An error means the new process is not serving
// (it has been stopped if it was still running) and this one carries on.
func (r *runner) upgrade() error {
	var ls []handover.Listener
	for _, l := range []struct {
		role, addr string
		ln         *listener
	}{{"tls", r.fc.Listen, r.tlsLn}, {"redirect", r.fc.Redirect.Listen, r.redirectLn}, {"admin", r.fc.Admin.Listen, r.adminLn}} {
		if l.ln == nil {
			continue
		}
		if tcp, ok := l.ln.Listener.(*net.TCPListener); ok {
			ls = append(ls, handover.Listener{Role: l.role, Addr: l.addr, Ln: tcp})
		}
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), upgradeReadyTimeout,
		fmt.Errorf("nothing said within %v", upgradeReadyTimeout))
	defer cancel()
	pid, err := handover.Start(ctx, ls)
	if err != nil {
		return err
	}
	exe, _ := os.Executable() // Start found it
	r.log.Info("upgrade: new process ready; this one stops accepting and drains", "new_pid", pid, "binary", exe)
	return nil
}

// handOver ends this process after a successful upgrade: it stops
// accepting on every listener (the new process has them), closes its
// tunnels with 1012 spread over upgrade_drain, and returns when the last
// has ended. The pid_file now names the new process and is left alone.
func (r *runner) handOver(stopped context.Context) {
	for _, l := range []*listener{r.tlsLn, r.redirectLn, r.adminLn} {
		if l != nil {
			l.retired.Store(true)
			l.Close()
		}
	}
	if r.redirect != nil {
		r.redirect.Close()
	}
	if r.admin != nil {
		r.admin.Close()
	}
	r.history.Stop()
	drain := r.srv.UpgradeDrain()
	r.log.Info("handing over: tunnels close with 1012 over upgrade_drain", "open_tunnels", r.srv.OpenTunnels(), "upgrade_drain", drain)
	// The close frames go out within drain; give the last peers the
	// shutdown timeout to answer, then close what is left.
	ctx, cancel := context.WithTimeout(context.Background(), drain+r.shutdownTimeout())
	defer cancel()
	// SIGTERM meanwhile (systemctl stop reaches both processes): what is
	// still open gets shutdown_timeout, then is closed.
	defer context.AfterFunc(stopped, func() {
		r.log.Info("stopping during the hand-over: remaining tunnels are closed after shutdown_timeout", "open_tunnels", r.srv.OpenTunnels())
		time.AfterFunc(r.shutdownTimeout(), cancel)
	})()
	if err := r.srv.Handover(ctx); err != nil {
		r.log.Warn("hand-over timeout: closed remaining tunnels", "error", err)
	}
}
