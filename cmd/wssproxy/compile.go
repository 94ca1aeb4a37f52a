package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// compiled is a loaded configuration compiled into what serving it needs,
// each part once: the process's own keys, TLS (tlsconf.Compile) and the
// proxy (proxy.Compile). Nothing runs yet: -t throws it away, serve and
// reload start from it.
type compiled struct {
	*config.Loaded
	level slog.Level
	tls   *tlsconf.Compiled
	proxy *proxy.Compiled
}

// compile compiles every part of l. Compiling is the only validation
// there is, so the error lists every problem of every part, with those
// the file's decoding found, each with file, line and key, sorted by
// line: what -t prints and what a refused reload logs, one line each.
func compile(l *config.Loaded) (*compiled, error) {
	c := &compiled{Loaded: l}
	var errs []error
	var err error
	if c.level, err = compileProcess(&l.File); err != nil {
		errs = append(errs, err)
	}
	if c.tls, err = tlsconf.Compile(l.TLS); err != nil {
		errs = append(errs, fielderr.Under("tls.", err))
	}
	if c.proxy, err = proxy.Compile(l.Config); err != nil {
		errs = append(errs, err)
	}
	if err := l.Errors(errors.Join(errs...)); err != nil {
		return nil, err
	}
	return c, nil
}

// compileProcess checks the keys that are the process's rather than the
// proxy's or TLS's: listeners, [admin], logs. It returns log_level.
func compileProcess(f *config.File) (slog.Level, error) {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fielderr.Wrap(key, err))
		}
	}
	add("listen", checkAddr(f.Listen))
	if f.Redirect.Listen != "" {
		add("redirect.listen", checkAddr(f.Redirect.Listen))
	}
	add("admin.listen", checkAdmin(f.Admin))
	switch f.LogFormat {
	case "", "text", "json":
	default:
		add("log_format", fmt.Errorf(`must be "text" or "json", got %q`, f.LogFormat))
	}
	if f.LogFile != "" {
		if fi, err := os.Stat(filepath.Dir(f.LogFile)); err != nil || !fi.IsDir() {
			add("log_file", fmt.Errorf("directory %s does not exist", filepath.Dir(f.LogFile)))
		}
	}
	level, err := parseLevel(f.LogLevel)
	add("log_level", err)
	return level, errors.Join(errs...)
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`must be host:port or :port, like ":443", got %q`, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// listen opens a TCP listener on addr (key names it in errors). A port
// below 1024 refused to a user without the privilege, or a port in use,
// gets what to do about it in the error itself.
func listen(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, explainListen(addr, err))
	}
	return ln, nil
}

// explainListen adds to a failed listen on addr what to do about it.
func explainListen(addr string, err error) error {
	_, port, _ := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	switch {
	case perr == nil && n > 0 && n < 1024 && errors.Is(err, syscall.EACCES):
		exe, xerr := os.Executable()
		if xerr != nil {
			exe = "/path/to/wssproxy"
		}
		return fmt.Errorf("%w: ports below 1024 need a privilege this user (uid %d) lacks; grant it with "+
			"`sudo setcap cap_net_bind_service=+ep %s`, or under systemd AmbientCapabilities=CAP_NET_BIND_SERVICE, "+
			"or let every user bind from port %d up with `sysctl net.ipv4.ip_unprivileged_port_start=%d`",
			err, os.Geteuid(), exe, n, n)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w: another process listens on port %s (`ss -ltnp 'sport = :%s'` or `lsof -i :%s` names it)", err, port, port, port)
	}
	return err
}
