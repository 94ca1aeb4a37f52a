package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Binary upgrades without dropping a tunnel (SIGUSR2, or -s upgrade), as
// nginx's USR2 and HAProxy's -sf do it:
//
//  1. The running process starts the binary at its own path (the new one,
//     after a package upgrade) with the same arguments, handing it its
//     listening sockets (ExtraFiles, named in upgradeEnv) and the write end
//     of a pipe.
//  2. The new process reads the configuration, serves the inherited
//     sockets where the configuration still names their addresses (fresh
//     ones otherwise), opens the admin listener, writes its pid_file, and
//     then writes "ready" on the pipe. Under systemd it also says
//     MAINPID= and READY=1 (Type=notify, NotifyAccess=all).
//  3. Only then does the old process stop accepting: the sockets stay open
//     in the new one, so connections waiting in the kernel's queue are
//     accepted there and nothing is refused. Its tunnels go on; they are
//     closed with 1012 Service Restart spread over upgrade_drain, and the
//     process exits when the last one has ended.
//
// A new binary that exits, or says nothing within upgradeReadyTimeout, is
// reported (and stopped, if still running); the old process keeps serving
// as if nothing had happened.
//
// Why not cloudflare/tableflip: it does the same hand-over, but allows one
// upgrader per process (the tests run several servers in one) and owns the
// listeners' bookkeeping, which reload (new addresses on SIGHUP) already
// does here. What is left is the few lines below.

// upgradeEnv names the inherited sockets in the new process's environment:
// "tls=3@127.0.0.1:443 redirect=4@:80 admin=5@127.0.0.1:9090 ready=6",
// each role's file descriptor and the address the old configuration gave.
const upgradeEnv = "WSSPROXY_UPGRADE_FDS"

// upgradeReadyTimeout bounds how long the old process waits for the new one.
const upgradeReadyTimeout = 30 * time.Second

// inherited is what a process started by an upgrade was handed.
type inherited struct {
	files map[string]inheritedFile // by role: "tls", "redirect", "admin"
	ready *os.File                 // the pipe to say "ready" on; nil if none
}

type inheritedFile struct {
	addr string // as the old configuration wrote it
	f    *os.File
}

// takeInherited reads upgradeEnv once and removes it, so that a later
// upgrade of this process starts from its own sockets.
func takeInherited() *inherited {
	v, ok := os.LookupEnv(upgradeEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(upgradeEnv)
	in := &inherited{files: make(map[string]inheritedFile)}
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

// listen opens a TCP listener for role on addr: the inherited socket when
// the old process had one for that role on the same configured address,
// otherwise a new one.
func (r *runner) listen(role, key, addr string) (net.Listener, error) {
	if r.inherit != nil {
		if in, ok := r.inherit.files[role]; ok {
			delete(r.inherit.files, role)
			if in.addr == addr {
				ln, err := net.FileListener(in.f)
				in.f.Close() // FileListener holds a copy
				if err == nil {
					return ln, nil
				}
				r.log.Warn("upgrade: inherited listener unusable; opening a new one", "role", role, "error", err)
			} else {
				in.f.Close()
			}
		}
	}
	return listen(key, addr)
}

// ready tells whoever started this process that it serves: the old process
// of an upgrade through the inherited pipe, and systemd through
// NOTIFY_SOCKET. Unused inherited sockets are closed.
func (r *runner) ready() {
	if in := r.inherit; in != nil {
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

// upgrade starts the binary at this process's path with its listeners and
// waits until it is ready. An error means the new process is not serving
// (it has been stopped if it was still running) and this one carries on.
func (r *runner) upgrade() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	readR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readR.Close()
	var files []*os.File
	var names []string
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, l := range []struct {
		role, addr string
		ln         *listener
	}{{"tls", r.fc.Listen, r.tlsLn}, {"redirect", r.fc.Redirect.Listen, r.redirectLn}, {"admin", r.fc.Admin.Listen, r.adminLn}} {
		if l.ln == nil {
			continue
		}
		tcp, ok := l.ln.Listener.(*net.TCPListener)
		if !ok {
			continue
		}
		f, err := tcp.File()
		if err != nil {
			readyW.Close()
			return fmt.Errorf("hand over the %s listener: %w", l.role, err)
		}
		files = append(files, f)
		names = append(names, fmt.Sprintf("%s=%d@%s", l.role, 2+len(files), l.addr))
	}
	files = append(files, readyW)
	names = append(names, fmt.Sprintf("ready=%d", 2+len(files)))

	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), upgradeEnv+"="+strings.Join(names, " "))
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, files
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", exe, err)
	}
	readyW.Close() // the child's copy is the one that matters now
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readR).ReadString('\n')
		line <- s
	}()
	timer := time.NewTimer(upgradeReadyTimeout)
	defer timer.Stop()
	select {
	case s := <-line:
		if strings.HasPrefix(s, "ready ") {
			r.log.Info("upgrade: new process ready; this one stops accepting and drains", "new_pid", cmd.Process.Pid, "binary", exe)
			return nil
		}
		err := <-exited // the pipe closed without "ready": it exited
		return fmt.Errorf("new process %d exited before it was ready: %v", cmd.Process.Pid, err)
	case err := <-exited:
		return fmt.Errorf("new process %d exited before it was ready: %v", cmd.Process.Pid, err)
	case <-timer.C:
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("new process %d not ready within %v; stopped it", cmd.Process.Pid, upgradeReadyTimeout)
	}
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
