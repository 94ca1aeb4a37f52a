package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/internal/health"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
)

// noBindKey marks a context whose -t leaves the ports alone: tests that
// check example files with fixed ports (:443, :80) must not depend on what
// else this machine listens on.
type noBindKey struct{}

// withoutBindCheck returns ctx marked for -t to skip bindCheck.
func withoutBindCheck(ctx context.Context) context.Context {
	return context.WithValue(ctx, noBindKey{}, true)
}

// bindCheck is -t's last step: it opens each listener the configuration
// would serve and closes it again, so that what would stop wssproxy from
// starting is reported now, as starting would report it: a port below
// 1024 without the privilege, a port another process holds. A port held
// by the running wssproxy itself (its admin listener says so) is no
// problem: a reload keeps its listeners. The admin listener is only
// warned about on warn, as starting only logs it. Errors are placed at
// the key, flag or variable that set the address.
func bindCheck(ctx context.Context, c *compiled, warn io.Writer) error {
	if ctx.Value(noBindKey{}) != nil {
		return nil
	}
	var running *health.Listening
	if c.Admin.Listen != "" {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, running, _ = health.Ask(actx, c.Admin.Listen, "/healthz")
		cancel()
	}
	ours := func(addr string) bool {
		return running != nil && (health.SamePort(addr, running.TLS) || (running.Redirect != "" && health.SamePort(addr, running.Redirect)))
	}
	var errs []error
	for _, l := range []struct{ key, addr string }{{"listen", c.Listen}, {"redirect.listen", c.Redirect.Listen}} {
		if l.addr == "" {
			continue
		}
		if err := listenaddr.Try(l.addr); err != nil && !(errors.Is(err, syscall.EADDRINUSE) && ours(l.addr)) {
			errs = append(errs, fielderr.Wrap(l.key, listenaddr.Explain(l.addr, err)))
		}
	}
	if a := c.Admin.Listen; a != "" && running == nil {
		if err := listenaddr.Try(a); err != nil {
			fmt.Fprintf(warn, "wssproxy: warning: admin.listen %s: %v; wssproxy would start without its admin endpoints\n", a, listenaddr.Explain(a, err))
		}
	}
	if len(errs) > 0 {
		return c.Errors(errors.Join(errs...))
	}
	return nil
}
