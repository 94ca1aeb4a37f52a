package main

import (
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// The client side of a WebSocket over HTTP/2 (h2.go) as the net.Conn the
// load modes read and write.

// h2stream is one WebSocket's stream, as a net.Conn.
type h2stream struct {
	c       *h2conn
	id      uint32
	status  string    // the response's :status, once it came
	cond    sync.Cond // L is &c.mu, which guards the rest
	buf     []byte
	rerr    error // the stream has ended (io.EOF: cleanly)
	send    int64
	unacked int
	closed  bool

	deadline time.Time
	timer    *time.Timer
}

// end records how the stream ended; c.mu is held.
func (st *h2stream) end(err error) {
	if st.rerr == nil {
		st.rerr = err
	}
	st.cond.Broadcast()
}

// wait waits on the stream's condition, failing once the deadline passes;
// c.mu is held.
func (st *h2stream) wait() error {
	if !st.deadline.IsZero() && !time.Now().Before(st.deadline) {
		return os.ErrDeadlineExceeded
	}
	st.cond.Wait()
	return nil
}

func (st *h2stream) Read(p []byte) (int, error) {
	c := st.c
	c.mu.Lock()
	for len(st.buf) == 0 && st.rerr == nil && !st.closed {
		if err := st.wait(); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	if st.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(st.buf) == 0 {
		err := st.rerr
		c.mu.Unlock()
		return 0, err
	}
	n := copy(p, st.buf)
	st.buf = st.buf[n:]
	if len(st.buf) == 0 {
		st.buf = st.buf[:0:0] // let the grown slice go
	}
	st.unacked += n
	c.unacked += n
	var streamInc, connInc int
	if st.unacked >= h2StreamWindow/2 {
		streamInc, st.unacked = st.unacked, 0
	}
	if c.unacked >= h2ConnWindow/2 {
		connInc, c.unacked = c.unacked, 0
	}
	c.mu.Unlock()
	if streamInc > 0 || connInc > 0 {
		c.wmu.Lock()
		if streamInc > 0 {
			c.fr.WriteWindowUpdate(st.id, uint32(streamInc))
		}
		if connInc > 0 {
			c.fr.WriteWindowUpdate(0, uint32(connInc))
		}
		c.wmu.Unlock()
	}
	return n, nil
}

func (st *h2stream) Write(p []byte) (int, error) {
	c := st.c
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		for (st.send <= 0 || c.connSend <= 0) && c.err == nil && !st.closed && st.rerr == nil {
			if err := st.wait(); err != nil {
				c.mu.Unlock()
				return written, err
			}
		}
		switch {
		case st.closed:
			c.mu.Unlock()
			return written, net.ErrClosed
		case st.rerr != nil:
			err := st.rerr
			c.mu.Unlock()
			return written, err
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return written, err
		}
		n := min(len(p), c.maxFrame, int(st.send), int(c.connSend))
		st.send -= int64(n)
		c.connSend -= int64(n)
		c.mu.Unlock()
		c.wmu.Lock()
		err := c.fr.WriteData(st.id, false, p[:n])
		c.wmu.Unlock()
		if err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close resets the stream (CANCEL) unless it has ended, and forgets it.
func (st *h2stream) Close() error {
	c := st.c
	c.mu.Lock()
	if st.closed {
		c.mu.Unlock()
		return nil
	}
	st.closed = true
	ended := st.rerr != nil
	delete(c.streams, st.id)
	if st.timer != nil {
		st.timer.Stop()
	}
	st.cond.Broadcast()
	c.mu.Unlock()
	if !ended {
		c.wmu.Lock()
		c.fr.WriteRSTStream(st.id, http2.ErrCodeCancel)
		c.wmu.Unlock()
	}
	return nil
}

func (st *h2stream) SetDeadline(t time.Time) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.deadline = t
	if st.timer != nil {
		st.timer.Stop()
	}
	if !t.IsZero() {
		st.timer = time.AfterFunc(time.Until(t), func() {
			c.mu.Lock()
			st.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	return nil
}

func (st *h2stream) SetReadDeadline(t time.Time) error  { return st.SetDeadline(t) }
func (st *h2stream) SetWriteDeadline(t time.Time) error { return st.SetDeadline(t) }
func (st *h2stream) LocalAddr() net.Addr                { return st.c.tc.LocalAddr() }
func (st *h2stream) RemoteAddr() net.Addr               { return st.c.tc.RemoteAddr() }
