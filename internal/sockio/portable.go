package sockio

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Buffers. A side holds a pooled 64 KiB buffer only while data moves and
// gives it back when a read comes back short (the burst is over), so an
// idle side holds no large buffer: memory per idle connection is what
// bounds a proxy of long-lived WebSockets. 64 KiB rather than 16: under
// TLS as many records as have come go into one forward, so one write to
// the backend, and a plain socket is read 64 KiB at a time (reads and
// writes per MB down by a third, examples/bench/PERFORMANCE.md).
const (
	bufSize   = 64 << 10
	smallSize = 256
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// portable is the engine for any net.Conn: its own Read and Write. While
// the peer is quiet the pump reads into 256 bytes of its own; a read that
// fills them means more is coming, and the reads use a pooled buffer until
// one comes back short.
type portable struct {
	c      net.Conn
	closed atomic.Bool // Close was called: a failed read says net.ErrClosed
	buf    *[]byte
	small  *[smallSize]byte
	shrink bool // give buf back at the next read: the caller is done with it
}

func newPortable(c net.Conn) *portable { return &portable{c: c} }

func (p *portable) IO() string { return IOPortable }

func (p *portable) Pump(feed func([]byte) error, end func(ferr, rerr error)) {
	for {
		b, rerr := p.read()
		if len(b) > 0 {
			if ferr := feed(b); ferr != nil {
				p.release()
				end(ferr, nil)
				return
			}
		}
		if rerr != nil {
			p.release()
			if p.closed.Load() {
				rerr = net.ErrClosed // as every Conn says after Close, whatever c said
			}
			end(nil, rerr)
			return
		}
	}
}

// read returns the next bytes, valid until the next call.
func (p *portable) read() ([]byte, error) {
	if p.shrink {
		p.release()
		p.shrink = false
	}
	if p.small == nil {
		p.small = new([smallSize]byte)
	}
	b := p.small[:]
	if p.buf != nil {
		b = *p.buf
	}
	n, err := p.c.Read(b)
	switch {
	case n == len(b) && p.buf == nil: // more is likely waiting
		p.buf = bufPool.Get().(*[]byte)
	case n < smallSize && p.buf != nil:
		p.shrink = true
	}
	return b[:n], err
}

func (p *portable) release() {
	if p.buf != nil {
		bufPool.Put(p.buf)
		p.buf = nil
	}
}

func (p *portable) Write(b []byte) (int, error)        { return p.c.Write(b) }
func (p *portable) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }
func (p *portable) Close() error {
	p.closed.Store(true)
	return p.c.Close()
}
func (p *portable) CloseWrite() error { return closeWrite(p.c) }

// closeWrite half-closes c: for TLS a close_notify alert, then the FIN
// (tls.Conn.CloseWrite sends only the alert). errors.ErrUnsupported for a
// connection that cannot half-close (an HTTP/2 stream, net.Pipe).
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite() // the FIN goes all the same: its failure is what counts
		if cw, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil // the FIN comes with the close
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
