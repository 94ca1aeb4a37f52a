package sockio

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The raw engine. A side's pump runs inside syscall.RawConn.Read: it reads
// the socket itself (read(2), raw_sys_linux.go) and forwards what it read
// (feed) before it reads again. Two things make that worth it: the system
// calls per message (a 32 B round trip through the proxy is two reads and
// two writes at best), and what an idle side holds.
//
// The skipped read. The runtime clears a socket's readiness when
// RawConn.Read starts, not each time its function returns "wait", and
// every arrival after that start wakes the function again
// (TestRawReadResetsReadinessOncePerCall). So a read that comes back
// short of the buffer has taken all the data there was, and the pump can
// wait at once, without the read(2) that would find the socket empty: a
// 32 B round trip makes two system calls fewer. What a short read cannot
// show is an end of stream (or an error) that came with the data: its
// wake-up was the data's, and the read that would return it is the one
// skipped; this is why Go's own internal/poll reads to EAGAIN
// (golang/go#15735). Here the poller watches each side for its end with
// EPOLLRDHUP (poller_linux.go), an event of its own that marks the side
// mustRead and wakes its pump: a side whose end has come skips nothing.
//
// Under crypto/tls the socket is read through the TLS connection's Read,
// which reads the connection under it, an Underlay whose Read is the
// hook here (under.Read): one read(2), or "nothing more" after a short
// one, said with a temporary net.Error, which crypto/tls passes up
// without spoiling what it has of a record (TestTLSKeepsStateOnTemporaryError).
// As many records as have come go into one forward, so one write to the
// backend.
//
// Waking a waiting pump (its end came, the sweep asks it to park, it is
// closed while parked) is a read deadline in the past: RawConn.Read then
// returns, and the pump starts it again, or parks.
//
// Closing. While the pump is inside RawConn.Read it holds the socket's
// read lock, and Close waits for that lock (TestCloseWaitsForRawRead): a
// Close from the pump itself would never return, one from elsewhere would
// wait for the forward. So Close shuts the socket down while the pump is
// inside (its peer sees the end at once, a write to it blocked elsewhere
// fails) and leaves the Close to the pump, which looks for it after each
// forward and at each wake-up.
type rawConn struct {
	p    *poller
	conn net.Conn        // as given: closed through it
	rc   syscall.RawConn // the socket's
	sock net.Conn        // the socket's connection (under TLS, the Underlay)
	tls  *tls.Conn       // set when the socket is read through crypto/tls
	read func(uintptr) bool
	w    rawWriter
	tok  uint64

	// The pump's own, touched only by the goroutine that pumps.
	feed       func([]byte) error
	end        func(ferr, rerr error)
	ferr, rerr error
	buf        *[]byte
	fd         int  // the socket, while inside RawConn.Read (for under.Read)
	inside     bool // the pump is inside RawConn.Read
	drained    bool // the last read emptied the socket: skip the next
	skipped    bool // under.Read skipped a read (rather than finding EAGAIN)

	inRaw       atomic.Bool   // the pump is inside RawConn.Read: Close shuts down
	closeWanted atomic.Bool   // Close was called
	closed      atomic.Bool   // the socket is closed
	waiting     atomic.Bool   // the pump waits for its socket
	wakes       atomic.Uint32 // runs of RawConn.Read's function
	mustRead    atomic.Bool   // skip no read: the end has come, or nothing watches for it
	parkWanted  atomic.Bool   // the sweep asked the pump to park

	// The poller's, under its mu.
	state int8
	idx   int    // in poller.active, or -1
	seen  uint32 // wakes at the last sweep
}

// conn is c as a raw side, or nil when the raw engine cannot serve it: it
// serves TCP and unix sockets, directly or under a TLS server connection
// whose Underlay it can hook.
func (p *poller) conn(c net.Conn) *rawConn {
	r := &rawConn{p: p, conn: c, sock: c, idx: -1}
	var u Underlay
	switch cc := c.(type) {
	case *tls.Conn:
		var ok bool
		if u, ok = cc.NetConn().(Underlay); !ok {
			return nil
		}
		r.tls, r.sock = cc, cc.NetConn()
		r.read = r.readTLS
	case *net.TCPConn, *net.UnixConn, Underlay:
		r.read = r.readPlain
	default:
		return nil
	}
	rc, err := r.sock.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	r.rc, r.w.rc = rc, rc
	r.w.fn = r.w.write1
	if !p.register(r) {
		return nil
	}
	if u != nil {
		u.SetHook((*under)(r))
	}
	return r
}

func (c *rawConn) IO() string { return IORaw }

func (c *rawConn) Pump(feed func([]byte) error, end func(ferr, rerr error)) {
	c.feed, c.end = feed, end
	c.p.mu.Lock()
	c.p.activate(c)
	c.p.mu.Unlock()
	c.loop()
}

// resume takes a parked pump up on a fresh goroutine.
func (c *rawConn) resume() {
	c.p.rewatch(c)
	c.loop()
}

// loop runs the pump until its side ends or parks.
func (c *rawConn) loop() {
	for {
		c.ferr, c.rerr = nil, nil
		c.inside = true
		c.inRaw.Store(true)
		err := c.rc.Read(c.read)
		c.inRaw.Store(false)
		c.inside = false
		c.release()
		if c.ferr != nil || c.rerr != nil {
			break
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A wake-up: the end came, the sweep asks to park, or a
			// Close. The flags are looked at after the deadline is
			// cleared, so none is missed.
			c.sock.SetReadDeadline(time.Time{})
			if c.parkWanted.Swap(false) && c.p.park(c) {
				return
			}
			continue
		}
		c.rerr = err // net.ErrClosed after a Close
		break
	}
	c.p.mu.Lock()
	c.p.deactivate(c)
	c.p.mu.Unlock()
	if c.closeWanted.Load() {
		c.closeNow() // left to the pump by Close
		if c.ferr == nil {
			c.rerr = net.ErrClosed
		}
	}
	end, ferr, rerr := c.end, c.ferr, c.rerr
	c.feed, c.end, c.ferr, c.rerr = nil, nil, nil, nil
	end(ferr, rerr)
}

// woken starts each run of RawConn.Read's function; true means stop (a
// Close came).
func (c *rawConn) woken() bool {
	c.waiting.Store(false)
	c.wakes.Add(1)
	if c.closeWanted.Load() {
		c.rerr = net.ErrClosed
		return true
	}
	return false
}

// forward passes b to feed; false means stop reading.
func (c *rawConn) forward(b []byte) bool {
	if err := c.feed(b); err != nil {
		c.ferr = err
		return false
	}
	if c.closeWanted.Load() {
		c.rerr = net.ErrClosed
		return false
	}
	return true
}

// wait is the pump going to wait for its socket: it holds no buffer then.
func (c *rawConn) wait() {
	c.release()
	c.waiting.Store(true)
}

// skip is wait after a short read, unless the side must read on (its end
// has come): false means read again now.
func (c *rawConn) skip() bool {
	c.wait()
	if c.mustRead.Load() { // after waiting is set: see poller.dispatch
		c.waiting.Store(false)
		return false
	}
	return true
}

// readPlain is RawConn.Read's function for a plain socket.
func (c *rawConn) readPlain(fd uintptr) bool {
	if c.woken() {
		return true
	}
	for {
		c.take()
		n, err := readFD(int(fd), *c.buf)
		switch {
		case err == unix.EAGAIN:
			c.wait()
			return false
		case err != nil:
			c.rerr = c.opError(err)
			return true
		case n == 0:
			c.rerr = io.EOF
			return true
		}
		if !c.forward((*c.buf)[:n]) {
			return true
		}
		if n < len(*c.buf) && c.skip() { // the socket is empty now
			return false
		}
	}
}

// readTLS is RawConn.Read's function for a socket under crypto/tls, which
// reads it through under.Read.
func (c *rawConn) readTLS(fd uintptr) bool {
	if c.woken() {
		return true
	}
	c.fd, c.drained = int(fd), false // woken: the socket may have bytes
	for {
		c.take()
		buf := *c.buf
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			c.skipped = false
			m, err = c.tls.Read(buf[n:])
			n += m
		}
		if n > 0 && !c.forward(buf[:n]) {
			return true
		}
		switch {
		case err == errWouldBlock && c.skipped: // after a short read
			if c.skip() {
				return false
			}
			c.drained = false
		case err == errWouldBlock:
			c.wait()
			return false
		case err != nil:
			c.rerr = err
			return true
		}
	}
}

// errWouldBlock is under.Read's "the socket is empty": a temporary
// net.Error, so crypto/tls keeps what it has read of a record and passes
// the error up as it is (TestTLSPassesTemporaryErrorUp).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "sockio: socket drained" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// under is a rawConn as the hook of its Underlay: crypto/tls's reads and
// writes of the socket.
type under rawConn

// Read is one read(2) while the pump reads through crypto/tls, unless the
// last one emptied the socket.
func (u *under) Read(p []byte) (int, error) {
	c := (*rawConn)(u)
	if !c.inside {
		return c.readOutside(p)
	}
	if c.drained {
		c.skipped = true
		return 0, errWouldBlock
	}
	n, err := readFD(c.fd, p)
	switch {
	case err == unix.EAGAIN:
		c.drained = true
		return 0, errWouldBlock
	case err != nil:
		return 0, c.opError(err)
	case n == 0:
		return 0, io.EOF
	case n < len(p):
		c.drained = true
	}
	return n, nil
}

func (u *under) Write(p []byte) (int, error) { return u.w.write(p) }

// readOutside is a read of the socket by anyone but the pump (nothing in
// the proxy does it; it is there so that the hook is a correct Read).
func (c *rawConn) readOutside(p []byte) (n int, err error) {
	rerr := c.rc.Read(func(fd uintptr) bool {
		n, err = readFD(int(fd), p)
		return err != unix.EAGAIN
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, c.opError(err)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Write(p)
	}
	return c.w.write(p)
}

func (c *rawConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
func (c *rawConn) CloseWrite() error                  { return closeWrite(c.conn) }

// Close closes the side from any goroutine (see rawConn).
func (c *rawConn) Close() error {
	c.closeWanted.Store(true)
	if c.inRaw.Load() {
		c.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
		return nil // the pump closes it
	}
	if c.p.takeParked(c) {
		// Parked: nobody reads it, so a fresh goroutine takes its pump
		// up, to find it closed and end.
		c.closeNow()
		go c.resume()
		return nil
	}
	return c.closeNow()
}

// closeNow closes the socket, once.
func (c *rawConn) closeNow() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.p.unregister(c)
	err := c.conn.Close()
	if c.tls != nil {
		c.sock.Close() // crypto/tls may not have: a Close before
	}
	return err
}

// wake ends the pump's wait with a read deadline in the past.
func (c *rawConn) wake() { c.sock.SetReadDeadline(time.Unix(1, 0)) }

func (c *rawConn) take() {
	if c.buf == nil {
		c.buf = bufPool.Get().(*[]byte)
	}
}

func (c *rawConn) release() {
	if c.buf != nil {
		bufPool.Put(c.buf)
		c.buf = nil
	}
}

func (c *rawConn) opError(errno error) error {
	return &net.OpError{Op: "read", Net: c.sock.LocalAddr().Network(), Source: c.sock.LocalAddr(),
		Addr: c.sock.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
}

// rawWriter writes to the socket with write(2) inside RawConn.Write, which
// waits for the socket when it is full and keeps the write deadline.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(uintptr) bool // write1, bound once
	p   []byte
	n   int
	err error
}

func (w *rawWriter) write1(fd uintptr) bool {
	for w.n < len(w.p) {
		m, err := writeFD(int(fd), w.p[w.n:])
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			w.err = os.NewSyscallError("write", err)
			return true
		}
		w.n += m
	}
	return true
}

func (w *rawWriter) write(p []byte) (int, error) {
	w.p, w.n, w.err = p, 0, nil
	if err := w.rc.Write(w.fn); err != nil && w.err == nil {
		w.err = err
	}
	n, err := w.n, w.err
	w.p = nil
	return n, err
}
