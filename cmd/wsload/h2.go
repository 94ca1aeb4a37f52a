package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wssproxy/wssproxy/internal/urlport"
)

// WebSockets over HTTP/2 (RFC 8441), as a browser opens them on a page's
// connection: -h2 makes each of a run's connections an extended CONNECT
// stream, -streams of them on one TLS connection, so that the proxy's cost
// per message and per idle tunnel can be read over HTTP/2 beside HTTP/1.1.
// The client is small and lean as the HTTP/1.1 one: one goroutine per
// connection reads frames and hands DATA to its stream; writes go out
// under the connection's lock, within the server's flow-control windows;
// receive window is returned as the stream's reader consumes it, in
// halves, as browsers do.

const (
	h2StreamWindow = 1 << 20  // what each stream may be sent ahead of our reading
	h2ConnWindow   = 64 << 20 // and the whole connection
)

var errH2Refused = errors.New("the server does not offer extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")

// h2pool hands out streams, -streams per connection, a new connection
// once the last one has opened its share (or failed).
type h2pool struct {
	d      *dialer
	per    int
	mu     sync.Mutex
	cur    *h2conn
	opened int // streams opened on cur
	all    []*h2conn
}

// stream opens a stream to the dialer's target, dialing from local when a
// new connection is needed.
func (p *h2pool) stream(ctx context.Context, local net.Addr) (*h2stream, error) {
	p.mu.Lock()
	if p.cur == nil || p.opened >= p.per || p.cur.broken() {
		c := &h2conn{streams: map[uint32]*h2stream{}, nextID: 1, maxFrame: 16384, initSend: 65535, connSend: 65535,
			ready: make(chan struct{}), up: make(chan struct{})}
		p.cur, p.opened = c, 0
		p.all = append(p.all, c)
		go func() {
			if err := c.dial(ctx, p.d, local); err != nil {
				c.fail(err)
			}
			close(c.up)
		}()
	}
	c := p.cur
	p.opened++
	p.mu.Unlock()
	select {
	case <-c.up:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := c.failed(); err != nil {
		return nil, err
	}
	return c.open(ctx, p.d.target.RequestURI(), p.d.target.Host)
}

// close closes every connection the pool opened.
func (p *h2pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.all {
		select {
		case <-c.up:
			if c.tc != nil {
				c.tc.Close()
			}
		default: // still dialing: its dial fails or ends with the caller's context
		}
	}
	p.all, p.cur = nil, nil
}

// h2conn is one HTTP/2 connection.
type h2conn struct {
	tc    *tls.Conn
	fr    *http2.Framer
	ready chan struct{} // closed at the server's first SETTINGS
	up    chan struct{} // closed when dial has returned

	wmu  sync.Mutex // fr's writing side, enc and hbuf
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	mu       sync.Mutex // the rest
	streams  map[uint32]*h2stream
	nextID   uint32
	maxFrame int
	initSend int64
	connSend int64
	unacked  int   // connection-level window consumed, not yet returned
	xconnect bool  // SETTINGS_ENABLE_CONNECT_PROTOCOL seen
	err      error // the connection has failed
}

func (c *h2conn) dial(ctx context.Context, d *dialer, local net.Addr) error {
	nd := d.net
	nd.LocalAddr = local
	nc, err := nd.DialContext(ctx, "tcp", urlport.HostPort(d.target))
	if err != nil {
		return err
	}
	cfg := d.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tc.Close()
		return fmt.Errorf("the server did not choose HTTP/2 (ALPN %q)", p)
	}
	c.tc = tc
	c.fr = http2.NewFramer(tc, bufio.NewReaderSize(tc, 32<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.wmu.Lock()
	io.WriteString(tc, http2.ClientPreface)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	err = c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	c.wmu.Unlock()
	if err != nil {
		tc.Close()
		return err
	}
	go c.readLoop()
	select {
	case <-c.ready:
	case <-ctx.Done():
		tc.Close()
		return ctx.Err()
	}
	return c.failed()
}

// broken reports whether the connection has failed.
func (c *h2conn) broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// failed is the connection's error, or errH2Refused when its server does
// not take WebSockets.
func (c *h2conn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if !c.xconnect {
		return errH2Refused
	}
	return nil
}

// open sends an extended CONNECT for path and waits for its answer.
func (c *h2conn) open(ctx context.Context, path, authority string) (*h2stream, error) {
	st := &h2stream{c: c}
	st.cond.L = &c.mu
	// Stream IDs must go out in increasing order (RFC 9113 §5.1.1): one is
	// taken and its HEADERS written under the write lock.
	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		c.wmu.Unlock()
		return nil, c.err
	}
	st.id, st.send = c.nextID, c.initSend
	c.nextID += 2
	c.streams[st.id] = st
	c.mu.Unlock()
	c.hbuf.Reset()
	for _, f := range [...][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
		{":path", path}, {":authority", authority}, {"sec-websocket-version", "13"}, {"user-agent", "wsload"}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		st.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	for st.status == "" && st.rerr == nil && ctx.Err() == nil {
		st.cond.Wait()
	}
	status, err := st.status, st.rerr
	c.mu.Unlock()
	switch {
	case status == "" && err == nil:
		err = ctx.Err()
	case status == "":
		err = fmt.Errorf("handshake: %w", err)
	case status != "200":
		err = fmt.Errorf("handshake: extended CONNECT answered %s (want 200)", status)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// readLoop reads the connection's frames until it fails.
func (c *h2conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.fail(err)
			return
		}
		if reply := c.handle(f); reply != nil {
			c.wmu.Lock()
			err = reply()
			c.wmu.Unlock()
			if err != nil {
				c.fail(err)
				c.tc.Close()
				return
			}
		}
	}
}

// handle takes in f; what it returns, if anything, is a reply to write
// (outside c.mu: the write lock is taken first where both are).
func (c *h2conn) handle(f http2.Frame) (reply func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.Header().StreamID]
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize:
				for _, st := range c.streams {
					st.send += int64(s.Val) - c.initSend
					st.cond.Broadcast()
				}
				c.initSend = int64(s.Val)
			case http2.SettingMaxFrameSize:
				c.maxFrame = int(s.Val)
			case http2.SettingEnableConnectProtocol:
				c.xconnect = s.Val == 1
			}
			return nil
		})
		select {
		case <-c.ready:
		default:
			close(c.ready)
		}
		return c.fr.WriteSettingsAck
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			c.connSend += int64(f.Increment)
			for _, st := range c.streams {
				st.cond.Broadcast()
			}
		} else if st != nil {
			st.send += int64(f.Increment)
			st.cond.Broadcast()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			return func() error { return c.fr.WritePing(true, data) }
		}
	case *http2.MetaHeadersFrame:
		if st != nil {
			if st.status == "" {
				st.status = f.PseudoValue("status")
				st.cond.Broadcast()
			}
			if f.StreamEnded() {
				st.end(io.EOF)
			}
		}
	case *http2.DataFrame:
		// Window is returned as the reader consumes data (Read); padding
		// counts as consumed at once, and so does all of a frame for a
		// stream no longer read.
		if st == nil {
			c.unacked += int(f.Length)
		} else {
			pad := int(f.Length) - len(f.Data())
			st.buf = append(st.buf, f.Data()...)
			st.unacked += pad
			c.unacked += pad
			if f.StreamEnded() {
				st.end(io.EOF)
			}
			st.cond.Broadcast()
		}
	case *http2.RSTStreamFrame:
		if st != nil {
			st.end(fmt.Errorf("stream reset by the server: %v", f.ErrCode))
		}
	case *http2.GoAwayFrame:
		for id, st := range c.streams {
			if id > f.LastStreamID {
				st.end(fmt.Errorf("GOAWAY %v", f.ErrCode))
			}
		}
	}
	return nil
}

// fail ends the connection and every stream on it with err.
func (c *h2conn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for _, st := range c.streams {
		st.end(err)
	}
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
}
