// Package handover passes listening sockets from a running wssproxy to the
// binary that replaces it (SIGUSR2, or -s upgrade), as nginx's USR2 and
// HAProxy's -sf do it:
//
//  1. The running process starts the binary at its own path (the new one,
//     after a package upgrade) with the same arguments, handing it its
//     listening sockets (ExtraFiles, named in Env) and the write end of a
//     pipe: Start.
//  2. The new process takes them (Take), reads the configuration, serves
//     the inherited sockets where the configuration still names their
//     addresses (fresh ones otherwise: Listen), opens the admin listener,
//     writes its pid_file, and then writes "ready" on the pipe (Ready). A
//     listener it cannot open, the admin's too, ends it before it says so.
//     Under systemd it also says MAINPID= and READY=1 (Type=notify,
//     NotifyAccess=all).
//  3. Only then does the old process stop accepting: the sockets stay open
//     in the new one, so connections waiting in the kernel's queue are
//     accepted there and nothing is refused. Its tunnels go on; the caller
//     closes them with 1012 Service Restart and exits when the last one has
//     ended.
//
// A new binary that exits, or says nothing within Start's timeout, is
// reported, and stopped with every process it started: it runs in a
// process group of its own, which Start ends whole, so that no child of a
// wrapper script keeps the inherited sockets (or, were it the real binary,
// goes on to serve beside the old process). The old process keeps serving
// as if nothing had happened.
//
// Why not cloudflare/tableflip: it does the same hand-over, but allows one
// upgrader per process (the tests run several servers in one) and owns the
// listeners' bookkeeping, which reload (new addresses on SIGHUP) already
// does in cmd/wssproxy. What is left is the few lines below.
//
// Unix only: Windows passes no descriptors to a child, and Start there
// returns an error wrapping errors.ErrUnsupported (dup_windows.go).
package handover

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Env names the inherited sockets in the new process's environment:
// "tls=3@127.0.0.1:443 redirect=4@:80 admin=5@127.0.0.1:9090 ready=6",
// each role's file descriptor and the address the old configuration gave.
const Env = "WSSPROXY_UPGRADE_FDS"

// Inherited is what a process started by an upgrade was handed. A nil
// *Inherited (a process not started by an upgrade) has nothing: Listen
// opens new sockets and Ready only tells systemd.
type Inherited struct {
	log   *slog.Logger
	files map[string]inheritedFile // by role: "tls", "redirect", "admin"
	ready *os.File                 // the pipe to say "ready" on; nil if none
}

type inheritedFile struct {
	addr string // as the old configuration wrote it
	f    *os.File
}

// Take reads Env once and removes it, so that a later upgrade of this
// process starts from its own sockets. It returns nil when this process
// was not started by an upgrade. log gets the warning when an inherited
// socket cannot be used.
func Take(log *slog.Logger) *Inherited {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return nil
	}
	os.Unsetenv(Env)
	in := &Inherited{log: log, files: make(map[string]inheritedFile)}
	for _, field := range strings.Fields(v) {
		role, rest, _ := strings.Cut(field, "=")
		fdText, addr, _ := strings.Cut(rest, "@")
		fd, err := strconv.Atoi(fdText)
		if err != nil || fd < 3 {
			continue
		}
		f := os.NewFile(uintptr(fd), role)
		if role == "ready" {
			in.ready = f
			continue
		}
		in.files[role] = inheritedFile{addr: addr, f: f}
	}
	return in
}

// Listen returns the inherited socket for role when the old process had
// one for that role on the same configured address, otherwise what
// fallback opens. Each role's socket is used once.
func (in *Inherited) Listen(role, addr string, fallback func() (net.Listener, error)) (net.Listener, error) {
	if in != nil {
		if inf, ok := in.files[role]; ok {
			delete(in.files, role)
			if inf.addr == addr {
				ln, err := net.FileListener(inf.f)
				inf.f.Close() // FileListener holds a copy
				if err == nil {
					return ln, nil
				}
				in.log.Warn("upgrade: inherited listener unusable; opening a new one", "role", role, "error", err)
			} else {
				inf.f.Close()
			}
		}
	}
	return fallback()
}

// Ready tells whoever started this process that it serves: the old process
// of an upgrade through the inherited pipe, and systemd through
// NOTIFY_SOCKET. Unused inherited sockets are closed.
func (in *Inherited) Ready() {
	if in != nil {
		for role, f := range in.files {
			f.f.Close()
			delete(in.files, role)
		}
		if in.ready != nil {
			fmt.Fprintf(in.ready, "ready %d\n", os.Getpid())
			in.ready.Close()
			in.ready = nil
		}
	}
	sdNotify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
}

// sdNotify sends state to systemd's notification socket, if there is one.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// Listener is one socket to hand over: its role ("tls", "redirect",
// "admin"), the address the configuration gave it, and the socket.
type Listener struct {
	Role, Addr string
	Ln         *net.TCPListener
}

// Start starts the binary at this process's path with this process's
// arguments and the listeners, and waits until it is ready, at most until
// ctx ends. An error means the new process is not serving (it has been
// stopped if it was still running) and this one carries on.
func Start(ctx context.Context, listeners []Listener) (newPID int, err error) {
	if err := supported(); err != nil {
		return 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own binary: %w", err)
	}
	readR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readR.Close()
	var files []*os.File
	var names []string
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, l := range listeners {
		f, err := dupListener(l.Ln)
		if err != nil {
			readyW.Close()
			return 0, fmt.Errorf("hand over the %s listener: %w", l.Role, err)
		}
		files = append(files, f)
		names = append(names, fmt.Sprintf("%s=%d@%s", l.Role, 2+len(files), l.Addr))
	}
	files = append(files, readyW)
	names = append(names, fmt.Sprintf("ready=%d", 2+len(files)))

	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), Env+"="+strings.Join(names, " "))
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, files
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	readyW.Close() // the child's copy is the one that matters now
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readR).ReadString('\n')
		line <- s
	}()
	// Not ready: what the new process started may live on without it, so
	// the group is ended after it has exited too. Its ID is not reused
	// while any of the group lives (POSIX), so the signal reaches no
	// other process.
	select {
	case s := <-line:
		if strings.HasPrefix(s, "ready ") {
			return pid, nil
		}
		err := <-exited // the pipe closed without "ready": it exited
		killGroup(cmd.Process)
		return 0, fmt.Errorf("new process %d exited before it was ready: %v; stopped its process group", pid, err)
	case err := <-exited:
		killGroup(cmd.Process)
		return 0, fmt.Errorf("new process %d exited before it was ready: %v; stopped its process group", pid, err)
	case <-ctx.Done():
		killGroup(cmd.Process)
		<-exited
		return 0, fmt.Errorf("new process %d not ready: %v; stopped it and its process group", pid, context.Cause(ctx))
	}
}
