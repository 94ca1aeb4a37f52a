package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// A pump's reads. Two things decide how they are done: the system calls
// per message (a 32 B round trip through the proxy is two reads and two
// writes at best), and what an idle tunnel holds (memory per idle
// connection is what bounds a proxy of long-lived WebSockets).
//
// Where the pump's side is a socket the runtime polls, directly (a plain
// backend over TCP or a unix socket) or under crypto/tls (the client's
// side, when nothing is layered between TLS and the socket), the pump runs
// inside syscall.RawConn.Read: it reads the socket itself, and forwards
// what it read (feed) before it reads again. The runtime clears the
// socket's readiness when RawConn.Read starts, not each time its function
// returns "wait", and every arrival after that start wakes the function
// again. So a read that comes back short of the buffer has taken all the
// data there was, and the pump can wait at once, without the read(2) that
// would find the socket empty: a 32 B round trip makes two system calls
// fewer. Under crypto/tls the socket is read through the connection's own
// Read (boundConn.Read calls readUnder), which says "nothing more" with a
// temporary error; crypto/tls passes that up and keeps what it has of a
// record.
//
// What a short read does not show is an end of stream (FIN or reset) that
// arrived together with the data: its wake-up was the data's, and the read
// that would return it is the one skipped. So the skip is never made after
// the peer's close frame (then its end is due, and is read at once), and a
// side that has waited peekAfter since a skipped read is looked at
// (runPeek: a MSG_PEEK from the timer's goroutine; an end or an error
// there wakes the pump with a past read deadline, and its next
// RawConn.Read starts with a real read). A peer that vanishes without a
// close frame, right after data, is seen within two periods; a busy side
// makes no such system call.
//
// A 64 KiB buffer comes from a pool for each burst and goes back before
// the pump waits: an idle side holds no buffer. Under TLS it takes as many
// records as have come (crypto/tls returns one per Read), so the backend
// gets one write for them; a plain backend's side is read 64 KiB at a
// time. Against 16 KiB, one read per record and one write each: reads
// and writes per MB down by a third or more, CPU per MB of 64 KiB
// messages down about 12% (examples/bench/PERFORMANCE.md).
//
// Anything else (an HTTP/2 stream, a PROXY protocol reader, TLS to a
// backend) is read with net.Conn.Read into a 256-byte buffer of the
// reader's own while the peer is quiet; a read that fills it means more
// is coming, and the next reads use a pooled buffer until one comes back
// short.
//
// While the pump is inside RawConn.Read it holds the socket's read lock,
// and net.Conn.Close waits for that lock: a Close from the pump itself (its
// forward decided the side is done) would never return, and one from
// elsewhere would wait for the forward. side.closeConn therefore shuts the
// socket down while the pump is inside RawConn.Read and leaves the Close
// to the pump, which looks for it after each forward and at each wake-up.
type reader struct {
	conn  net.Conn
	raw   syscall.RawConn // conn's socket (or, with tls, the socket under it)
	tls   *tls.Conn       // set when the socket is read through crypto/tls
	under *boundConn      // the socket's connection under tls
	eof   *atomic.Bool    // the side sent its close frame: its end is due

	buf    *[]byte             // pooled, while data moves
	shrink bool                // give buf back at the next read
	small  *[smallBufSize]byte // only where the socket is not read directly

	// The state of one RawConn.Read, in fields rather than a closure
	// allocated per tunnel.
	feed       func([]byte) error
	readFD     func(uintptr) bool
	ferr, rerr error
	fd         int  // the socket, for readUnder
	drained    bool // the last read emptied the socket: wait before reading
	skipped    bool // readUnder skipped a read (rather than finding EAGAIN)

	inRaw       atomic.Bool // the pump is inside RawConn.Read
	closeWanted atomic.Bool // closeConn left the Close to the pump

	// The check on a waiting pump (runCheck).
	waiting    atomic.Bool   // the pump waits for its socket
	waitSkip   atomic.Bool   // it does so after a skipped read
	wakes      atomic.Uint32 // times the pump was woken or started
	armed      atomic.Bool   // check is armed (or running)
	parkWanted atomic.Bool   // the check woke the pump to park
	check      *time.Timer   // created by the pump when it first waits
	parkable   bool          // the pump can park (set before it first waits)
	seen       uint32        // wakes at the check's last run (the check's own)
	peek       *time.Timer   // the look after a skipped read (runPeek)
	peekArmed  atomic.Bool
	peekWakes  atomic.Uint32 // wakes when the peek was armed
}

const (
	copyBufSize  = 64 << 10
	smallBufSize = 256
)

// checkAfter is the period of the check on a waiting pump: one that has
// waited a whole period parks. A variable (checkPeriod) only so that tests
// can make pumps park at once. peekAfter is when a pump waiting after a
// skipped read is looked at.
const (
	checkAfter = time.Second
	peekAfter  = 250 * time.Millisecond
)

var checkPeriod atomic.Int64

// checkRuns counts the check's runs (for tests: parked pumps have none).
var checkRuns atomic.Int64

func init() { checkPeriod.Store(int64(checkAfter)) }

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// errParked is run's "the pump has waited long enough to park": it may
// hand its socket to the parker and end its goroutine (parker.go), then
// call run again when the socket is ready.
var errParked = errors.New("parked")

// errWouldBlock is readUnder's "the socket is empty": temporary, so
// crypto/tls keeps what it has read of a record and reads on later.
var errWouldBlock = &wouldBlock{}

type wouldBlock struct{}

func (*wouldBlock) Error() string   { return "socket drained" }
func (*wouldBlock) Timeout() bool   { return false }
func (*wouldBlock) Temporary() bool { return true }

// newReader reads c; eof, if not nil, is set once c's peer has sent its
// close frame.
func newReader(c net.Conn, eof *atomic.Bool) *reader {
	r := &reader{conn: c, eof: eof}
	switch c := c.(type) {
	case *tls.Conn:
		if bc, ok := c.NetConn().(*boundConn); ok {
			if raw, err := bc.SyscallConn(); err == nil {
				r.raw, r.tls, r.under = raw, c, bc
				r.readFD = r.fdReadTLS
			}
		}
	case syscall.Conn:
		if raw, err := c.SyscallConn(); err == nil {
			r.raw = raw
			r.readFD = r.fdRead
		}
	}
	r.parkable = r.raw != nil && parkingWorks()
	return r
}

// run reads the connection until it ends or feed fails, passing each
// chunk read to feed; a chunk is valid until feed returns. It returns
// feed's error, or the read's (io.EOF at the end of the stream;
// net.ErrClosed after a closeConn).
func (r *reader) run(feed func([]byte) error) (ferr, rerr error) {
	if r.raw == nil {
		for {
			b, rerr := r.read()
			if len(b) > 0 {
				if err := feed(b); err != nil {
					return err, nil
				}
			}
			if rerr != nil {
				return nil, rerr
			}
		}
	}
	r.feed = feed
	if r.under != nil {
		r.under.direct = r
		defer func() { r.under.direct = nil }()
	}
	r.ferr, r.rerr = nil, nil
	r.inRaw.Store(true)
	defer r.inRaw.Store(false)
	for {
		err := r.raw.Read(r.readFD)
		if err != nil && r.rerr == nil && r.ferr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// The check's wake-up: read again, from a real read; or park.
			r.deadlineConn().SetReadDeadline(time.Time{})
			if r.parkWanted.Swap(false) {
				r.rerr = errParked
				r.waiting.Store(false) // in the parker's hands now: no more checks
				break
			}
			continue
		}
		if err != nil && r.rerr == nil && r.ferr == nil {
			r.rerr = err
		}
		break
	}
	if r.check != nil && r.rerr != errParked {
		r.check.Stop()
	}
	if r.peek != nil && r.peek.Stop() {
		r.peekArmed.Store(false) // stopped before it ran, which disarms it
	}
	r.feed = nil
	r.release()
	return r.ferr, r.rerr
}

// forward passes b to feed; false means stop reading.
func (r *reader) forward(b []byte) bool {
	err := r.feed(b)
	if err != nil {
		r.ferr = err
		return false
	}
	return !r.stopWanted()
}

// stopWanted reports a closeConn that was left to the pump.
func (r *reader) stopWanted() bool {
	if r.closeWanted.Load() {
		r.rerr = net.ErrClosed
		return true
	}
	return false
}

// woken starts each run of RawConn.Read's function.
func (r *reader) woken() {
	r.waiting.Store(false)
	r.waitSkip.Store(false)
	r.wakes.Add(1)
}

// wait is the pump going to wait for its socket, right after a skipped
// read if skip: the check is armed unless it already is.
func (r *reader) wait(skip bool) {
	r.release() // wait holding no buffer
	r.waitSkip.Store(skip)
	r.waiting.Store(true)
	if r.armed.CompareAndSwap(false, true) {
		if r.check == nil {
			// Set before it can run: the check uses it.
			r.check = time.AfterFunc(time.Hour, r.runCheck)
			r.check.Stop()
		}
		r.check.Reset(time.Duration(checkPeriod.Load()))
	}
	if skip && r.peekArmed.CompareAndSwap(false, true) {
		r.peekWakes.Store(r.wakes.Load())
		if r.peek == nil {
			r.peek = time.AfterFunc(time.Hour, r.runPeek)
			r.peek.Stop()
		}
		r.peek.Reset(peekAfter)
	}
}

// runCheck runs on the check's timer while armed: a pump found waiting,
// woken by nothing for a whole checkAfter, parks (parker.go). The check
// stops when it is not needed (the pump arms it again when it waits).
func (r *reader) runCheck() {
	checkRuns.Add(1)
	w := r.wakes.Load()
	waiting := r.waiting.Load()
	switch {
	case waiting && w != r.seen:
		r.seen = w
		r.check.Reset(time.Duration(checkPeriod.Load()))
		return
	case waiting && r.parkable:
		r.parkWanted.Store(true)
		r.wake()
	}
	r.seen = w
	r.disarm()
}

// disarm stops the check; the pump may have started waiting after the
// check looked, and found it armed: then it goes on.
func (r *reader) disarm() {
	r.armed.Store(false)
	if r.waiting.Load() && r.armed.CompareAndSwap(false, true) {
		r.check.Reset(time.Duration(checkPeriod.Load()))
	}
}

// runPeek runs on the peek's timer, peekAfter after a pump began to wait
// after a skipped read: an end of stream or an error on its socket, which
// came with its last data, wakes it to read.
func (r *reader) runPeek() {
	w := r.wakes.Load()
	// Woken since the wait it was armed for, the pump has read again: only
	// a wait that has lasted the whole period is looked at.
	if w == r.peekWakes.Load() && r.waiting.Load() && r.waitSkip.Load() && r.pending() {
		r.wake()
	}
	r.peekArmed.Store(false)
	// A wait after a skip that began since the load above found the peek
	// armed: look again for it.
	if w2 := r.wakes.Load(); w2 != r.peekWakes.Load() && r.waiting.Load() && r.waitSkip.Load() && r.peekArmed.CompareAndSwap(false, true) {
		r.peekWakes.Store(w2)
		r.peek.Reset(peekAfter)
	}
}

// pending reports whether the socket has an end of stream, an error or
// bytes waiting (MSG_PEEK: nothing is taken).
func (r *reader) pending() bool {
	var b [1]byte
	got := false
	r.raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		got = err != syscall.EAGAIN || n > 0
	})
	return got
}

// shutdown ends the socket's reads and writes at once (its peer sees the
// end, a write to it blocked elsewhere fails), but leaves the descriptor,
// whose Close would wait for the pump: the pump closes it (closeConn).
func (r *reader) shutdown() {
	r.raw.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}

// wake ends the pump's wait with a past read deadline.
func (r *reader) wake() {
	r.deadlineConn().SetReadDeadline(time.Unix(1, 0))
}

func (r *reader) deadlineConn() net.Conn {
	if r.under != nil {
		return r.under
	}
	return r.conn
}

// fdRead is RawConn.Read's function for a plain socket.
func (r *reader) fdRead(fd uintptr) bool {
	r.woken()
	if r.stopWanted() {
		return true
	}
	for {
		r.take()
		n, errno := readFD(int(fd), *r.buf)
		switch {
		case errno == syscall.EAGAIN:
			r.wait(false)
			return false
		case errno != nil:
			r.rerr = r.opError(errno)
			return true
		case n == 0:
			r.rerr = io.EOF
			return true
		}
		if !r.forward((*r.buf)[:n]) {
			return true
		}
		if n < len(*r.buf) && !r.eofDue() { // the socket is empty now
			r.wait(true)
			return false
		}
	}
}

// fdReadTLS is RawConn.Read's function for a socket under crypto/tls,
// which reads the socket through boundConn.Read, that is readUnder.
func (r *reader) fdReadTLS(fd uintptr) bool {
	r.woken()
	if r.stopWanted() {
		return true
	}
	r.fd, r.drained = int(fd), false // woken: the socket may have bytes
	for {
		r.take()
		// As many records as have come, up to the buffer's size: one
		// forward, so one write to the backend, for all of them.
		buf := *r.buf
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			r.skipped = false
			m, err = r.tls.Read(buf[n:])
			n += m
		}
		if n > 0 {
			if !r.forward((*r.buf)[:n]) {
				return true
			}
		}
		switch {
		case err == errWouldBlock && r.skipped && r.eofDue():
			r.drained = false // its close frame came: read its end at once
		case err == errWouldBlock:
			r.wait(r.skipped)
			return false
		case err != nil:
			r.rerr = err
			return true
		}
	}
}

// eofDue reports that the side has sent its close frame.
func (r *reader) eofDue() bool { return r.eof != nil && r.eof.Load() }

// readUnder is boundConn.Read while the pump reads through crypto/tls:
// one read(2), unless the last one emptied the socket.
func (r *reader) readUnder(p []byte) (int, error) {
	if r.drained {
		r.skipped = true
		return 0, errWouldBlock
	}
	n, errno := readFD(r.fd, p)
	switch {
	case errno == syscall.EAGAIN:
		r.drained = true
		return 0, errWouldBlock
	case errno != nil:
		return 0, r.opError(errno)
	case n == 0:
		return 0, io.EOF
	case n < len(p):
		r.drained = true
	}
	return n, nil
}

// readFD and writeFD are read(2) and write(2) on a non-blocking socket,
// without telling the runtime's scheduler: neither can block, and a
// system call the scheduler knows of, if it takes a while (a loopback
// write runs the receiver's TCP input too), gets its P handed to another
// thread by sysmon, which costs two context switches.
func readFD(fd int, p []byte) (int, error) {
	for {
		var ptr unsafe.Pointer
		if len(p) > 0 {
			ptr = unsafe.Pointer(&p[0])
		}
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

func writeFD(fd int, p []byte) (int, error) {
	for {
		var ptr unsafe.Pointer
		if len(p) > 0 {
			ptr = unsafe.Pointer(&p[0])
		}
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(ptr), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// rawWriter writes to a socket with writeFD inside RawConn.Write, which
// waits for the socket when it is full and honours the write deadline.
type rawWriter struct {
	raw     syscall.RawConn
	p       []byte
	n       int
	err     error
	writeFn func(uintptr) bool
}

func newRawWriter(raw syscall.RawConn) *rawWriter {
	w := &rawWriter{raw: raw}
	w.writeFn = w.fdWrite
	return w
}

func (w *rawWriter) fdWrite(fd uintptr) bool {
	for w.n < len(w.p) {
		m, err := writeFD(int(fd), w.p[w.n:])
		if err == syscall.EAGAIN {
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
	if err := w.raw.Write(w.writeFn); err != nil && w.err == nil {
		w.err = err
	}
	n, err := w.n, w.err
	w.p = nil
	return n, err
}

func (r *reader) opError(errno error) error {
	c := r.deadlineConn()
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(),
		Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
}

// read returns the next bytes from a connection that is not read
// directly, valid until the next call; at the end of the stream, io.EOF.
func (r *reader) read() ([]byte, error) {
	if r.shrink { // the burst is over: the caller is done with the last bytes
		r.release()
		r.shrink = false
	}
	if r.small == nil {
		r.small = new([smallBufSize]byte)
	}
	b := r.small[:]
	if r.buf != nil {
		b = *r.buf
	}
	n, err := r.conn.Read(b)
	switch {
	case n == len(b) && r.buf == nil: // more is likely waiting
		r.take()
	case n < smallBufSize && r.buf != nil:
		r.shrink = true
	}
	return b[:n], err
}

func (r *reader) take() {
	if r.buf == nil {
		r.buf = bufPool.Get().(*[]byte)
	}
}

// release returns the pooled buffer.
func (r *reader) release() {
	if r.buf != nil {
		bufPool.Put(r.buf)
		r.buf = nil
	}
}
