// Package listenaddr checks and opens the TCP addresses wssproxy listens
// on, and says what to do when one cannot be opened: a port below 1024
// without the privilege, a port another process holds.
package listenaddr

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// Check reports whether addr is host:port or :port with a port in range.
func Check(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`must be host:port or :port, like ":443", got %q`, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

// Listen opens a TCP listener on addr (key names it in errors), with what
// to do about a failure in the error itself (see Explain).
func Listen(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, Explain(addr, err))
	}
	return ln, nil
}

// Try opens a TCP listener on addr and closes it: -t's way of finding
// out now what would stop a start.
func Try(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// Explain adds to a failed listen on addr what to do about it; err stays
// in the chain (errors.Is(err, syscall.EADDRINUSE) still holds).
func Explain(addr string, err error) error {
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
