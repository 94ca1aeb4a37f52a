package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// A pump's reads. An idle tunnel should hold as little as possible:
// memory per idle connection is what bounds a proxy of long-lived
// WebSockets. A 16 KiB buffer (the largest TLS record's plaintext) comes
// from a pool only while data moves:
//
//   - A plain socket (the backend over TCP or a unix socket) is read inside
//     syscall.RawConn.Read: the buffer is taken for the read(2) and given
//     back if the socket turns out empty (EAGAIN), before the goroutine
//     parks on the runtime's poller. An idle backend side holds nothing.
//   - Anything layered (crypto/tls on the client's side, which may hold
//     plaintext and records it read ahead; a PROXY protocol reader) is read
//     with net.Conn.Read into a 256-byte buffer of the reader's own while
//     the peer is quiet. A read that fills it means more is coming: the next
//     reads use a pooled buffer, served from what crypto/tls already holds,
//     until one comes back short.
//
// Measured and rejected (examples/bench/PERFORMANCE.md): parking the
// layered side with no buffer at all. It needs a read with a past deadline
// (to learn that crypto/tls holds nothing) and a MSG_PEEK (RawConn.Read
// clears the poller's readiness before it calls its function, so data that
// arrived since the last read is only seen by trying), which costs more
// CPU per message than the 256 bytes it saves are worth.
// Nor can the read that finds a socket empty be skipped after a short
// read, for the same reason: the tunnel would hang.
type reader struct {
	conn   net.Conn
	raw    syscall.RawConn // conn's socket when conn is one: read directly
	buf    *[]byte         // pooled, while data moves
	shrink bool            // give buf back at the next read
	small  [smallBufSize]byte

	// For raw.Read, without a closure allocated per read.
	readFD func(uintptr) bool
	n      int
	errno  error
}

const (
	copyBufSize  = 16 << 10
	smallBufSize = 256
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func newReader(c net.Conn) *reader {
	r := &reader{conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
			r.readFD = r.fdRead
		}
	}
	return r
}

// read returns the next bytes from the connection, valid until the next
// call; at the end of the stream, io.EOF.
func (r *reader) read() ([]byte, error) {
	if r.raw != nil {
		return r.readDirect()
	}
	if r.shrink { // the burst is over: the caller is done with the last bytes
		r.release()
		r.shrink = false
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

func (r *reader) fdRead(fd uintptr) bool {
	r.take()
	for {
		r.n, r.errno = syscall.Read(int(fd), *r.buf)
		if r.errno != syscall.EINTR {
			break
		}
	}
	if r.errno == syscall.EAGAIN {
		r.release() // park holding no buffer
		return false
	}
	return true
}

func (r *reader) readDirect() ([]byte, error) {
	if err := r.raw.Read(r.readFD); err != nil {
		return nil, err
	}
	switch {
	case r.errno != nil:
		return nil, &net.OpError{Op: "read", Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(),
			Addr: r.conn.RemoteAddr(), Err: os.NewSyscallError("read", r.errno)}
	case r.n <= 0:
		return nil, io.EOF
	}
	return (*r.buf)[:r.n], nil
}
