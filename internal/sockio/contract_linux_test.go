package sockio

// Contract tests: one per assumption the raw engine makes about Go's
// runtime, crypto/tls and the kernel. Each is named after its assumption,
// so that a Go or kernel upgrade that breaks one fails that test by name,
// rather than every tunnel in some way nothing explains. The day one
// fails, WSSPROXY_RAWIO=0 serves every tunnel with the portable engine,
// which assumes none of them.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSocketsAreNonblocking: the sockets net gives (dialed, accepted, TCP
// and unix) are in non-blocking mode, so a read(2) or write(2) made
// without telling the scheduler (raw_sys_linux.go) never blocks a thread.
func TestSocketsAreNonblocking(t *testing.T) {
	t.Parallel()
	tcpA, tcpB := tcpPair(t)
	unixA, unixB := unixPair(t)
	for name, c := range map[string]net.Conn{"tcp dialed": tcpA, "tcp accepted": tcpB, "unix dialed": unixA, "unix accepted": unixB} {
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var flags int
		var ferr error
		rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) })
		if ferr != nil || flags&unix.O_NONBLOCK == 0 {
			t.Errorf("%s socket: flags %#x, %v: not non-blocking", name, flags, ferr)
		}
	}
}

// TestRawReadResetsReadinessOncePerCall: syscall.RawConn.Read clears the
// socket's readiness when it starts, not each time its function returns
// "wait", so bytes that arrive after the function's last read wake it
// again within the same call. The skipped read depends on it: without
// it, a pump that waits after a short read would sleep on data that came
// meanwhile.
func TestRawReadResetsReadinessOncePerCall(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	rc, _ := a.(syscall.Conn).SyscallConn()
	a.SetReadDeadline(time.Now().Add(10 * time.Second)) // a broken contract fails, not hangs
	calls := 0
	var got []byte
	err := rc.Read(func(fd uintptr) bool {
		calls++
		if calls == 1 {
			// Data arrives after this run began and before it says
			// "wait": nothing reads it in this run.
			if _, err := b.Write([]byte("late")); err != nil {
				t.Error(err)
				return true
			}
			return false
		}
		buf := make([]byte, 16)
		n, err := unix.Read(int(fd), buf)
		if err == unix.EAGAIN {
			return false
		}
		got = buf[:max(n, 0)]
		return true
	})
	if err != nil {
		t.Fatalf("RawConn.Read: %v (runs: %d): data that came after a run's read did not wake the function", err, calls)
	}
	if string(got) != "late" {
		t.Fatalf("read %q, want %q", got, "late")
	}
}

// TestPastDeadlineWakesRawRead: a read deadline set in the past from
// another goroutine ends a waiting RawConn.Read with
// os.ErrDeadlineExceeded, and once it is cleared the next RawConn.Read
// waits again and reads. This is how a waiting pump is woken (its end
// came, the sweep asks it to park).
func TestPastDeadlineWakesRawRead(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	rc, _ := a.(syscall.Conn).SyscallConn()
	waiting := make(chan struct{})
	go func() {
		<-waiting
		a.SetReadDeadline(time.Unix(1, 0))
	}()
	first := true
	err := rc.Read(func(uintptr) bool {
		if first {
			first = false
			close(waiting)
		}
		return false
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("RawConn.Read ended with %v, want os.ErrDeadlineExceeded", err)
	}
	a.SetReadDeadline(time.Time{})
	b.Write([]byte("x"))
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := rc.Read(func(fd uintptr) bool {
		_, err := unix.Read(int(fd), make([]byte, 1))
		return err != unix.EAGAIN
	}); err != nil {
		t.Fatalf("after the deadline was cleared, RawConn.Read: %v", err)
	}
}

// TestShutdownWakesRawRead: shutdown(2) of a socket from another goroutine
// while RawConn.Read waits on it wakes the function, whose read then sees
// the end, and the peer sees the end at once. Close cannot do this (it
// waits for the read lock RawConn.Read holds), so the raw engine's Close
// shuts the socket down and leaves the Close to the pump.
func TestShutdownWakesRawRead(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	rc, _ := a.(syscall.Conn).SyscallConn()
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	waiting := make(chan struct{})
	go func() {
		<-waiting
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
	}()
	first := true
	var n int
	err := rc.Read(func(fd uintptr) bool {
		var err error
		n, err = unix.Read(int(fd), make([]byte, 8))
		if err == unix.EAGAIN {
			if first {
				first = false
				close(waiting)
			}
			return false
		}
		return true
	})
	if err != nil || n != 0 {
		t.Fatalf("RawConn.Read after shutdown: %d bytes, %v; want the end (0, nil)", n, err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v, want io.EOF", err)
	}
}

// flakyConn is a connection under crypto/tls that gives the first read
// only part of what is there, then errWouldBlock once.
type flakyConn struct {
	net.Conn
	step int
}

func (c *flakyConn) Read(p []byte) (int, error) {
	c.step++
	switch c.step {
	case 1:
		return c.Conn.Read(p[:3]) // part of a record header
	case 2:
		return 0, errWouldBlock
	}
	return c.Conn.Read(p)
}

// flakyTLS is a TLS connection whose server end reads through a
// flakyConn, which reads normally until it is armed.
func flakyTLS(t *testing.T) (server, client *tls.Conn, fc *flakyConn) {
	t.Helper()
	server, client = tlsPair(t, func(c net.Conn) net.Conn {
		fc = &flakyConn{Conn: c, step: 100}
		return fc
	})
	return server, client, fc
}

// TestTLSKeepsStateOnTemporaryError: crypto/tls treats an error from the
// connection under it whose Temporary() is true as not fatal: it keeps the
// part of a record it has read, and a later Read goes on from there. The
// raw engine says "the socket is empty" that way in the middle of
// records.
func TestTLSKeepsStateOnTemporaryError(t *testing.T) {
	t.Parallel()
	server, client, fc := flakyTLS(t)
	fc.step = 0
	msg := []byte("one record, read in two goes")
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := server.Read(buf); n != 0 || err == nil {
		t.Fatalf("first Read: %d, %v; want the temporary error", n, err)
	}
	n, err := server.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("Read after a temporary error: %q, %v; want %q: crypto/tls dropped its state", buf[:n], err, msg)
	}
}

// TestTLSPassesTemporaryErrorUp: crypto/tls's Read returns the temporary
// error of the connection under it as it is, the same value, so the raw
// engine can tell "the socket is empty" (errWouldBlock) from a failure.
func TestTLSPassesTemporaryErrorUp(t *testing.T) {
	t.Parallel()
	server, client, fc := flakyTLS(t)
	fc.step = 0
	client.Write([]byte("x"))
	if _, err := server.Read(make([]byte, 8)); err != errWouldBlock {
		t.Fatalf("crypto/tls returned %#v, want errWouldBlock itself", err)
	}
}

// TestEpollReportsEndThatCameWithData: an EPOLLRDHUP edge-triggered
// registration reports a FIN that arrived together with data, whether it
// came before the registration was made or after; and reports nothing for
// data alone (so watching every side costs nothing per message).
func TestEpollReportsEndThatCameWithData(t *testing.T) {
	t.Parallel()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	events := make([]unix.EpollEvent, 4)
	wait := func(ms int) (uint32, bool) {
		for {
			n, err := unix.EpollWait(epfd, events, ms)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return 0, false
			}
			return events[0].Events, true
		}
	}
	register := func(c net.Conn) {
		rc, _ := c.(syscall.Conn).SyscallConn()
		rc.Control(func(fd uintptr) {
			err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: watchEvents, Fd: 1})
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Registered first, then data alone: nothing; then data and the FIN.
	a, b := tcpPair(t)
	register(a)
	b.Write([]byte("data alone"))
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	a.Read(make([]byte, 64)) // it has arrived
	if ev, ok := wait(0); ok {
		t.Fatalf("data alone was reported (%#x): every message would cost an event", ev)
	}
	b.Write([]byte("last words"))
	b.Close()
	if ev, ok := wait(10_000); !ok || ev&unix.EPOLLRDHUP == 0 {
		t.Fatalf("the FIN after data: events %#x, reported %v; want EPOLLRDHUP", ev, ok)
	}

	// Data and the FIN before the registration.
	c, d := tcpPair(t)
	d.Write([]byte("last words"))
	d.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := c.Read(make([]byte, 4)); n == 0 { // some of it has arrived
		t.Fatal("no data")
	}
	register(c)
	if ev, ok := wait(10_000); !ok || ev&unix.EPOLLRDHUP == 0 {
		t.Fatalf("a FIN before the registration: events %#x, reported %v; want EPOLLRDHUP", ev, ok)
	}
}

// TestEpollDescriptorIsPollable: the runtime's poller watches a
// non-blocking epoll descriptor given to os.NewFile, so the poller's
// goroutine waits for events in RawConn.Read (no thread blocked in
// epoll_wait) and closing the file ends the wait.
func TestEpollDescriptorIsPollable(t *testing.T) {
	t.Parallel()
	p, why := newPoller(DefaultParkAfter)
	if p == nil {
		t.Fatalf("no poller: %s", why)
	}
	// The poller's goroutine is waiting in RawConn.Read; an event must
	// reach it: a side parked at once and woken by data.
	a, b := tcpPair(t)
	c := p.conn(a)
	if c == nil {
		t.Fatal("TCP socket not raw")
	}
	ended := make(chan error, 1)
	c.feed, c.end = func([]byte) error { return nil }, func(_, rerr error) { ended <- rerr }
	if !p.park(c) {
		t.Fatal("could not park")
	}
	b.Write([]byte("wake up"))
	b.Close()
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("resumed pump ended with %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poller's goroutine never got the event")
	}
	c.Close()
	if err := p.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-p.done:
	default:
		t.Fatal("the poller's goroutine outlived Close")
	}
}

// TestCloseWaitsForRawRead pins that net.Conn.Close does not return while
// the connection's RawConn.Read is running its function: Close waits for
// the read lock the function holds. rawConn.Close depends on it: while
// the pump is inside, Close shuts the socket down and leaves the Close
// itself to the pump (a Close from the pump would never return). If a Go
// release made Close return at once, the pump would read a closed (and
// perhaps reused) descriptor.
func TestCloseWaitsForRawRead(t *testing.T) {
	t.Parallel()
	a, _ := tcpPair(t)
	rc, err := a.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	inside, release, readDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readDone)
		rc.Read(func(uintptr) bool { close(inside); <-release; return true })
	}()
	<-inside
	var returned atomic.Bool
	closed := make(chan struct{})
	go func() { a.Close(); returned.Store(true); close(closed) }()
	// Give Close every chance to return while the function runs; it
	// must not. (It would return within microseconds if it did not wait.)
	for range 10_000 {
		if returned.Load() {
			close(release)
			t.Fatal("Close returned while RawConn.Read's function was running")
		}
		runtime.Gosched()
	}
	close(release)
	<-closed
	<-readDone
}

// TestEpollModReportsWhatCameBefore pins that EPOLL_CTL_MOD reports what a
// socket already has: parking a side turns its end-of-stream watch into a
// one-shot EPOLLIN registration with a MOD, and a message (or a FIN) that
// arrived between the side's last read and that MOD must wake it at once,
// not when the next byte comes. Resuming turns it back with a MOD too,
// and an end already there must be reported then.
func TestEpollModReportsWhatCameBefore(t *testing.T) {
	t.Parallel()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	ctl := func(c net.Conn, op int, events uint32) {
		t.Helper()
		rc, _ := c.(syscall.Conn).SyscallConn()
		rc.Control(func(fd uintptr) { err = unix.EpollCtl(epfd, op, int(fd), &unix.EpollEvent{Events: events, Fd: 1}) })
		if err != nil {
			t.Fatal(err)
		}
	}
	wait := func() uint32 {
		t.Helper()
		events := make([]unix.EpollEvent, 4)
		for {
			n, err := unix.EpollWait(epfd, events, 10_000)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("no event within 10 s (%v)", err)
			}
			return events[0].Events
		}
	}
	a, b := tcpPair(t)
	ctl(a, unix.EPOLL_CTL_ADD, watchEvents)
	b.Write([]byte("came while running")) // data alone: the watch says nothing
	ctl(a, unix.EPOLL_CTL_MOD, parkEvents)
	if ev := wait(); ev&unix.EPOLLIN == 0 {
		t.Fatalf("park after data: events %#x, want EPOLLIN", ev)
	}
	b.Close() // the FIN, while the one-shot registration is spent
	ctl(a, unix.EPOLL_CTL_MOD, watchEvents)
	if ev := wait(); ev&unix.EPOLLRDHUP == 0 {
		t.Fatalf("rewatch after the FIN: events %#x, want EPOLLRDHUP", ev)
	}
}
