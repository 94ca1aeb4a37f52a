//go:build unix

package handover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv tells this test binary, started by Start as the new process,
// what to do: "exit" (a broken binary); "ready" (say ready, serving none
// of the sockets, as when the new configuration moved every address);
// "wrapper-hang" and "wrapper-exit" (a wrapper script: start a child of
// its own that inherits the sockets, as a shell's children do, then never
// say ready, or exit without it). That child, "grandchild", holds the
// sockets and tells the test on the address in signalEnv until it is
// killed.
const (
	childEnv  = "HANDOVER_TEST_CHILD"
	signalEnv = "HANDOVER_TEST_SIGNAL"
)

func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(Env); ok { // started by Start: the new process
		switch os.Getenv(childEnv) {
		case "ready":
			// Ready, then alive until the test ends it: a process that
			// exited at once could be seen exiting before its "ready" was
			// read, which Start rightly calls a failure.
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGTERM)
			Take(slog.New(slog.DiscardHandler)).Ready()
			<-stop
			os.Exit(0)
		case "wrapper-hang", "wrapper-exit":
			wrapper(os.Getenv(childEnv) == "wrapper-hang")
		case "grandchild":
			c, err := net.Dial("tcp", os.Getenv(signalEnv))
			if err != nil {
				os.Exit(4)
			}
			fmt.Fprintf(c, "%d\n", os.Getpid())
			os.Stdout.WriteString("up\n")
			time.Sleep(time.Hour) // holding the inherited sockets, and c
			os.Exit(0)
		default:
			os.Exit(3)
		}
	}
	os.Exit(m.Run())
}

// wrapper starts this binary as "grandchild" with the sockets it was
// handed (descriptors 3 and 4: one listener and the ready pipe), waits
// until it is up, then hangs or exits.
func wrapper(hang bool) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=grandchild")
	cmd.ExtraFiles = []*os.File{os.NewFile(3, "listener"), os.NewFile(4, "ready")}
	out, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		os.Exit(5)
	}
	bufio.NewReader(out).ReadString('\n')
	if hang {
		time.Sleep(time.Hour)
	}
	os.Exit(3)
}

// TestStartLeavesListenersNonblocking guards the old process's listeners
// through a hand-over: whether the new process fails or is ready without
// taking a socket over, this process's listener stays in non-blocking
// mode, so an Accept keeps its deadline and Close ends it. A copy made by
// (*net.TCPListener).File and passed as ExtraFiles (whose Fd clears
// O_NONBLOCK on the open file description both copies share) left Go's
// poller calling a blocking accept(2): Close then waited for a connection
// to come, and an old process whose admin listener nobody called never
// exited (TestUpgrade hung).
func TestStartLeavesListenersNonblocking(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "") // the child's Ready tells systemd only when it asks
	for _, tc := range []struct {
		name, child string
		ok          bool
	}{
		{"new process fails", "exit", false},
		{"new process ready, takes no socket", "ready", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(childEnv, tc.child)
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pid, err := Start(ctx, []Listener{{Role: "tls", Addr: "cfg:443", Ln: ln}})
			if pid > 0 {
				defer syscall.Kill(pid, syscall.SIGTERM)
			}
			if (err == nil) != tc.ok {
				t.Fatalf("Start: %v; want ok %v", err, tc.ok)
			}
			// Nothing is queued, so a non-blocking accept(2) finds the
			// queue empty and the poller waits out the deadline; a
			// blocking one waits in the kernel for a connection.
			ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
			accepted := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				accepted <- err
			}()
			wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			select {
			case err := <-accepted:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Accept after Start: %v; want its deadline", err)
				}
			case <-wait.Done():
				// A connection ends the blocked accept(2), and the goroutine.
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					c.Close()
				}
				<-accepted
				t.Errorf("Accept after Start ignored its deadline: the listener was left in blocking mode, and its Close would wait for a connection")
			}
		})
	}
}

// TestListenInherited guards the new process's side of the hand-over: a
// socket named in Env is served for its role when the configuration still
// gives the same address, once; another address, another role or a
// process not started by an upgrade get fallback's listener.
func TestListenInherited(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "") // Ready tells systemd only when it asks
	errFallback := errors.New("fallback")
	fallback := func() (net.Listener, error) { return nil, errFallback }
	for _, tc := range []struct {
		name, role, addr string
		inherited        bool
	}{
		{"same role and address", "tls", "cfg:443", true},
		{"address changed", "tls", "cfg:8443", false},
		{"other role", "admin", "cfg:443", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			fd, err := syscall.Dup(int(f.Fd())) // Take's file owns its own descriptor
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(Env, fmt.Sprintf("tls=%d@cfg:443", fd))
			in := Take(slog.New(slog.DiscardHandler))
			if _, ok := os.LookupEnv(Env); ok {
				t.Errorf("%s still set after Take", Env)
			}
			got, err := in.Listen(tc.role, tc.addr, fallback)
			if !tc.inherited {
				if err != errFallback {
					t.Errorf("Listen(%q, %q) = %v, %v; want fallback's", tc.role, tc.addr, got, err)
				}
				in.Ready()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Addr().String() != ln.Addr().String() {
				t.Errorf("inherited listener on %s, want %s", got.Addr(), ln.Addr())
			}
			if _, err := in.Listen(tc.role, tc.addr, fallback); err != errFallback {
				t.Errorf("second Listen(%q) = %v; want fallback's: a socket is inherited once", tc.role, err)
			}
			in.Ready()
		})
	}
	t.Run("not an upgrade", func(t *testing.T) {
		var in *Inherited // what Take returns without Env
		if _, err := in.Listen("tls", "cfg:443", fallback); err != errFallback {
			t.Errorf("nil Inherited: Listen = %v; want fallback's", err)
		}
		in.Ready()
	})
}

// TestStartEndsProcessGroup guards a new binary that is a wrapper (a shell
// script that starts the real binary, which inherits the sockets): when
// it is not ready in time, or exits without being ready, Start stops its
// whole process group, so no child of it keeps the listening sockets
// (and, had it been the real binary, went on to serve beside this
// process). It used to kill the direct child only.
func TestStartEndsProcessGroup(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, tc := range []struct{ name, child string }{
		{"wrapper not ready in time", "wrapper-hang"},
		{"wrapper exits before ready", "wrapper-exit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(childEnv, tc.child)
			sig, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer sig.Close()
			t.Setenv(signalEnv, sig.Addr().String())
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			deadline, cancelDeadline := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancelDeadline()
			// The grandchild tells its PID on a connection it holds until
			// it dies: then the test reads EOF. Once it is up, the wait
			// for a hanging wrapper's "ready" ends, as a timeout would end
			// it.
			ctx, notReady := context.WithCancel(deadline)
			type up struct {
				c   net.Conn
				pid int
			}
			ups := make(chan up, 1)
			go func() {
				defer close(ups)
				c, err := sig.Accept()
				if err != nil {
					return
				}
				line, _ := bufio.NewReader(c).ReadString('\n')
				pid, _ := strconv.Atoi(strings.TrimSpace(line))
				ups <- up{c, pid}
				if tc.child == "wrapper-hang" {
					notReady()
				}
			}()
			_, err = Start(ctx, []Listener{{Role: "tls", Addr: "cfg:443", Ln: ln}})
			if err == nil {
				t.Fatal("Start: ready, want an error")
			}
			t.Logf("Start: %v", err)
			var g up
			select {
			case g = <-ups:
			case <-deadline.Done():
			}
			if g.c == nil {
				t.Fatal("the wrapper's child never said it was up")
			}
			defer g.c.Close()
			g.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := g.c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
				syscall.Kill(g.pid, syscall.SIGKILL)
				t.Fatalf("the wrapper's child (pid %d) still runs after Start gave up, holding the listener", g.pid)
			}
			// Nobody holds the listening socket but this process.
			addr := ln.Addr().String()
			ln.Close()
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after its listener closed here", addr)
			}
		})
	}
}
