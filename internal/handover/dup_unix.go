//go:build unix

package handover

import (
	"net"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

func supported() error { return nil }

// ownGroup makes cmd's process the leader of a new process group, which
// every process it starts joins unless it moves itself elsewhere.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends SIGKILL to p's process group: p, if it still runs, and
// the processes it started.
func killGroup(p *os.Process) { unix.Kill(-p.Pid, unix.SIGKILL) }

// dupListener is a copy of ln's socket for the new process, left in
// non-blocking mode. Not (*net.TCPListener).File: exec passes a file by its
// Fd, which puts such a copy in blocking mode, and with it ln itself, as
// O_NONBLOCK belongs to the open file description the copies share. Go's
// poller would then call a blocking accept(2) on ln, which neither a
// deadline nor Close ends, only a connection: until the new process's
// net.FileListener set the flag back (never, when it failed or took no
// socket), an Accept that found the queue empty hung, and so did closing
// the listener (an old process whose admin listener nobody called never
// exited).
func dupListener(ln *net.TCPListener) (*os.File, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, os.NewSyscallError("fcntl", dupErr)
	}
	// os.NewFile sees O_NONBLOCK and leaves it be: its Fd does not clear it.
	return os.NewFile(uintptr(fd), "listener"), nil
}
