package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Clients for WebSockets over HTTP/2 (RFC 8441). The test binary runs with
// GODEBUG=http2xconnect=1 (TestMain), as the wssproxy binary does.

// h2Conn is one HTTP/2 connection to the proxy, as a browser tab holds
// one: every WebSocket dialed through it is a stream of that connection.
// Go 1.27's own HTTP/2 client cannot send an extended CONNECT (net/http
// refuses the header name ":protocol" before x/net's support for it is
// reached), so this is a small client on x/net's Framer. It sends within
// the server's windows; it returns a stream's receive window only as the
// stream is read, and the connection's at once (as browsers keep a large
// session window), so a stream nobody reads stops only itself.
type h2Conn struct {
	e    *env
	conn *tls.Conn
	fr   *http2.Framer
	done chan struct{} // closed when the read loop has ended

	wmu  sync.Mutex // frames out, and enc
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	mu       sync.Mutex
	cond     *sync.Cond // broadcast on every change below
	settings map[http2.SettingID]uint32
	nextID   uint32
	connSend int64 // the server's connection window
	initSend int64 // its SETTINGS_INITIAL_WINDOW_SIZE
	streams  map[uint32]*h2ClientStream
	goaway   bool
	err      error // why the read loop ended
}

// h2ClientStream is one stream of an h2Conn, as a net.Conn-like
// io.ReadWriteCloser. Its fields are guarded by h2Conn.mu.
type h2ClientStream struct {
	c         *h2Conn
	id        uint32
	send      int64 // the server's window for it
	head      *h2Response
	buf       bytes.Buffer // received, not yet read
	eof       bool         // END_STREAM received
	reset     bool         // RST_STREAM received or sent
	code      http2.ErrCode
	closed    bool // Close: our END_STREAM sent, reads end
	writeDone bool
}

// h2 opens an HTTP/2 connection to the proxy, closed when the test ends.
func (e *env) h2(t testing.TB) *h2Conn {
	t.Helper()
	cfg := e.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c := &h2Conn{e: e, conn: tc, fr: http2.NewFramer(tc, tc), done: make(chan struct{}), nextID: 1,
		connSend: 65535, initSend: 65535, streams: map[uint32]*h2ClientStream{}}
	c.cond = sync.NewCond(&c.mu)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	io.WriteString(tc, http2.ClientPreface)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20})
	c.fr.WriteWindowUpdate(0, 1<<30)
	go c.readLoop()
	t.Cleanup(func() {
		tc.Close()
		<-c.done
	})
	c.mu.Lock()
	for c.settings == nil && c.err == nil {
		c.cond.Wait()
	}
	c.mu.Unlock()
	return c
}

func (c *h2Conn) write(f func(fr *http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f(c.fr)
}

func (c *h2Conn) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		var reply func(*http2.Framer) error
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				break
			}
			if c.settings == nil {
				c.settings = map[http2.SettingID]uint32{}
			}
			f.ForeachSetting(func(s http2.Setting) error {
				c.settings[s.ID] = s.Val
				if s.ID == http2.SettingInitialWindowSize {
					for _, st := range c.streams {
						st.send += int64(s.Val) - c.initSend
					}
					c.initSend = int64(s.Val)
				}
				return nil
			})
			reply = func(fr *http2.Framer) error { return fr.WriteSettingsAck() }
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				c.connSend += int64(f.Increment)
			} else if st := c.streams[f.StreamID]; st != nil {
				st.send += int64(f.Increment)
			}
		case *http2.MetaHeadersFrame:
			if st := c.streams[f.StreamID]; st != nil {
				r := &h2Response{status: f.PseudoValue("status"), header: http.Header{}}
				for _, hf := range f.RegularFields() {
					r.header.Add(hf.Name, hf.Value)
				}
				st.head = r
				st.eof = st.eof || f.StreamEnded()
			}
		case *http2.DataFrame:
			n := uint32(f.Length)
			if n > 0 {
				reply = func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, n) }
			}
			if st := c.streams[f.StreamID]; st != nil {
				if !st.closed {
					st.buf.Write(f.Data())
				}
				st.eof = st.eof || f.StreamEnded()
			}
		case *http2.RSTStreamFrame:
			if st := c.streams[f.StreamID]; st != nil {
				st.reset, st.code = true, f.ErrCode
			}
		case *http2.GoAwayFrame:
			c.goaway = true
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				reply = func(fr *http2.Framer) error { return fr.WritePing(true, data) }
			}
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if reply != nil {
			c.write(reply)
		}
	}
}

// open starts a stream with a request of fields (name, value, …), and
// waits for its response head.
func (c *h2Conn) open(ctx context.Context, fields ...string) (*h2ClientStream, *h2Response, error) {
	c.wmu.Lock()
	c.mu.Lock()
	st := &h2ClientStream{c: c, id: c.nextID, send: c.initSend}
	c.nextID += 2
	c.streams[st.id] = st
	c.mu.Unlock()
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: strings.ToLower(fields[i]), Value: fields[i+1]})
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	c.wmu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for st.head == nil && !st.reset && c.err == nil && ctx.Err() == nil {
		c.cond.Wait()
	}
	switch {
	case st.head != nil:
		return st, st.head, nil
	case st.reset:
		return nil, nil, fmt.Errorf("stream %d reset: %v", st.id, st.code)
	case c.err != nil:
		return nil, nil, c.err
	}
	return nil, nil, ctx.Err()
}

func (st *h2ClientStream) Read(p []byte) (int, error) {
	c := st.c
	c.mu.Lock()
	for st.buf.Len() == 0 && !st.eof && !st.reset && !st.closed && c.err == nil {
		c.cond.Wait()
	}
	var n int
	var err error
	switch {
	case st.closed:
		err = net.ErrClosed
	case st.buf.Len() > 0:
		n, _ = st.buf.Read(p)
	case st.eof:
		err = io.EOF
	case st.reset:
		err = fmt.Errorf("stream %d reset: %v", st.id, st.code)
	default:
		err = c.err
	}
	c.mu.Unlock()
	if n > 0 {
		c.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(st.id, uint32(n)) })
	}
	return n, err
}

func (st *h2ClientStream) Write(p []byte) (int, error) {
	c := st.c
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		for (st.send <= 0 || c.connSend <= 0) && !st.reset && !st.writeDone && c.err == nil {
			c.cond.Wait()
		}
		if st.reset || st.writeDone || c.err != nil {
			c.mu.Unlock()
			return written, net.ErrClosed
		}
		n := min(int64(len(p)), st.send, c.connSend, 16384)
		st.send -= n
		c.connSend -= n
		c.mu.Unlock()
		if err := c.write(func(fr *http2.Framer) error { return fr.WriteData(st.id, false, p[:n]) }); err != nil {
			return written, err
		}
		written += int(n)
		p = p[n:]
	}
	return written, nil
}

// Close ends our half of the stream (END_STREAM), like a socket's close
// ends its half with a FIN, and ends reads here.
func (st *h2ClientStream) Close() error {
	c := st.c
	c.mu.Lock()
	done := st.writeDone || st.reset
	st.closed, st.writeDone = true, true
	c.cond.Broadcast()
	c.mu.Unlock()
	if !done {
		c.write(func(fr *http2.Framer) error { return fr.WriteData(st.id, true, nil) })
	}
	return nil
}

// resetStream sends RST_STREAM.
func (st *h2ClientStream) resetStream(code http2.ErrCode) {
	c := st.c
	c.mu.Lock()
	st.reset, st.writeDone = true, true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(st.id, code) })
}

// closing reports whether the server has sent GOAWAY or the connection
// has ended.
func (c *h2Conn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goaway || c.err != nil
}

// dial opens a WebSocket on a new stream of c. coder/websocket is the
// WebSocket peer: h2Upgrader turns its HTTP/1.1 handshake into an extended
// CONNECT and the stream's 200 into the 101 it expects.
func (c *h2Conn) dial(ctx context.Context, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = &http.Client{Transport: h2Upgrader{c}}
	return websocket.Dial(ctx, "wss://"+c.e.addr+path, opts)
}

func (c *h2Conn) mustDial(t testing.TB, ctx context.Context, path string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ws, _, err := c.dial(ctx, path, opts)
	if err != nil {
		t.Fatalf("dial %s over HTTP/2: %v", path, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// h2Upgrader is the http.RoundTripper behind h2Conn.dial.
type h2Upgrader struct{ c *h2Conn }

func (u h2Upgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	fields := []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", req.URL.RequestURI(), ":authority", req.Host}
	if req.Host == "" {
		fields[9] = req.URL.Host
	}
	for k, vv := range req.Header {
		switch k {
		case "Upgrade", "Connection", "Sec-Websocket-Key":
			continue
		}
		for _, v := range vv {
			fields = append(fields, k, v)
		}
	}
	st, head, err := u.c.open(req.Context(), fields...)
	if err != nil {
		return nil, err
	}
	code, _ := strconv.Atoi(head.status)
	resp := &http.Response{StatusCode: code, Header: head.header, Proto: "HTTP/2.0", ProtoMajor: 2, Request: req, Body: st}
	if code != http.StatusOK {
		st.Close()
		resp.Body = io.NopCloser(strings.NewReader(""))
		return resp, nil // coder/websocket reports the status
	}
	resp.StatusCode = http.StatusSwitchingProtocols
	resp.Header.Set("Upgrade", "websocket")
	resp.Header.Set("Connection", "Upgrade")
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	return resp, nil
}

// h2Raw is an HTTP/2 connection driven frame by frame, for what a client
// library hides: SETTINGS, RST_STREAM, GOAWAY, flow control.
type h2Raw struct {
	t        testing.TB
	conn     *tls.Conn
	fr       *http2.Framer
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	settings map[http2.SettingID]uint32 // the server's first SETTINGS
}

// h2Raw connects, exchanges prefaces and SETTINGS, and returns at the
// server's SETTINGS. Reads and writes end with ctx's deadline.
func (e *env) h2Raw(t testing.TB, ctx context.Context) *h2Raw {
	t.Helper()
	cfg := e.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	}
	h := &h2Raw{t: t, conn: tc, fr: http2.NewFramer(tc, tc), settings: map[http2.SettingID]uint32{}}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
	if err := h.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return h
}

// connect opens stream id with an extended CONNECT for path; fields are
// more header fields, name and value alternately (lower case), and replace
// the defaults of the same name.
func (h *h2Raw) connect(id uint32, path string, fields ...string) {
	h.t.Helper()
	h.headers(id, append([]string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", path,
		":authority", "localhost", "sec-websocket-version", "13"}, fields...)...)
}

// headers sends a HEADERS frame opening stream id, without END_STREAM.
// Later pairs replace earlier ones of the same name; an empty value drops
// the field.
func (h *h2Raw) headers(id uint32, fields ...string) {
	h.t.Helper()
	var names []string
	values := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		if _, ok := values[fields[i]]; !ok {
			names = append(names, fields[i])
		}
		values[fields[i]] = fields[i+1]
	}
	h.hbuf.Reset()
	for _, n := range names {
		if values[n] != "" {
			h.enc.WriteField(hpack.HeaderField{Name: n, Value: values[n]})
		}
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// h2Response is what came back on a stream.
type h2Response struct {
	status string
	header http.Header
	body   []byte
	reset  http2.ErrCode // RST_STREAM's code, if the stream was reset
	ended  bool          // END_STREAM seen
}

// next reads frames until one for stream id matters: its response
// headers, or DATA, END_STREAM or RST_STREAM. Connection-level frames are
// answered (PING) or noted (GOAWAY) on the way; DATA on any stream is
// returned to the server's window at once.
func (h *h2Raw) next(id uint32, r *h2Response) (goaway *http2.GoAwayFrame) {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return f
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				h.fr.WriteWindowUpdate(0, uint32(n))
				h.fr.WriteWindowUpdate(f.StreamID, uint32(n))
			}
			if f.StreamID == id {
				r.body = append(r.body, f.Data()...)
				r.ended = f.StreamEnded()
				return nil
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				r.status = f.PseudoValue("status")
				r.header = http.Header{}
				for _, hf := range f.RegularFields() {
					r.header.Add(hf.Name, hf.Value)
				}
				r.ended = f.StreamEnded()
				return nil
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				r.reset = f.ErrCode
				return nil
			}
		}
	}
}

// response reads stream id's response head.
func (h *h2Raw) response(id uint32) *h2Response {
	h.t.Helper()
	r := &h2Response{}
	for r.status == "" && r.reset == 0 {
		if ga := h.next(id, r); ga != nil {
			h.t.Fatalf("stream %d: GOAWAY %v before a response", id, ga.ErrCode)
		}
	}
	return r
}

// finish reads stream id to its end and returns its body.
func (h *h2Raw) finish(id uint32, r *h2Response) *h2Response {
	h.t.Helper()
	for !r.ended && r.reset == 0 {
		if ga := h.next(id, r); ga != nil {
			h.t.Fatalf("stream %d: GOAWAY %v", id, ga.ErrCode)
		}
	}
	return r
}

func (r *h2Response) String() string {
	return fmt.Sprintf("%s %v %q reset=%v", r.status, r.header, strings.TrimSpace(string(r.body)), r.reset)
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's deadline", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// closeWrite ends our half of the stream (END_STREAM) and goes on
// reading, as a socket's CloseWrite sends a FIN.
func (st *h2ClientStream) closeWrite() {
	c := st.c
	c.mu.Lock()
	done := st.writeDone || st.reset
	st.writeDone = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if !done {
		c.write(func(fr *http2.Framer) error { return fr.WriteData(st.id, true, nil) })
	}
}
