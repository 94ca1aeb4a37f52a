package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// BenchmarkH2 compares WebSockets over HTTP/2 with HTTP/1.1, interleaved
// in one run, by the CPU of the proxy alone: wssproxy runs as a process of
// its own (built here), and proxy-cpu-ns/op is its user and system time
// per operation from /proc (10 ms ticks; run with -benchtime 3s or more).
// The clients are hand-written and allocate nothing per message; the
// backends are in this process.
//
//   - msg/h1|h2/SIZE: one round trip of a SIZE-byte binary message (two
//     forwarded messages) on an open tunnel, as BenchmarkTunnel.
//   - handshake/h1: a new TLS connection, the upgrade, a 32-byte echo and
//     the close handshake (what a page's WebSocket costs without RFC
//     8441). handshake/h2-conn: the same on a new HTTP/2 connection.
//     handshake/h2-stream: a new stream on an open HTTP/2 connection
//     (what it costs with RFC 8441, the page's connection being there).
func BenchmarkH2(b *testing.B) {
	raw := rawBackend(b, rawEcho)
	coder := testutil.Serve(b, echo.Handler(echo.Options{}))
	p := startProxyProcess(b, "/raw", "ws://"+raw, "/wss", "ws://"+coder)
	for _, size := range []int{32, 64 << 10} {
		for _, proto := range []string{"h1", "h2"} {
			b.Run(fmt.Sprintf("msg/%s/%dB", proto, size), func(b *testing.B) {
				var rt func(out, in []byte) error
				if proto == "h1" {
					conn, br := rawClient(b, p.addr, p.tls)
					defer conn.Close()
					rt = func(out, in []byte) error {
						if _, err := conn.Write(out); err != nil {
							return err
						}
						_, err := readFrame(br, in)
						return err
					}
				} else {
					c := dialBenchH2(b, p.addr, p.tls)
					defer c.conn.Close()
					id := c.open(b, "/raw/x")
					rt = func(out, in []byte) error {
						if err := c.write(id, out); err != nil {
							return err
						}
						return c.readMessage(id, in)
					}
				}
				out := frame(true, 0, 0x2, make([]byte, size), false)
				in := make([]byte, size+14)
				b.SetBytes(int64(size))
				p.measure(b, func() {
					if err := rt(out, in); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
	closeFrame := closeWith(1000, "")
	hello := text("tom")
	b.Run("handshake/h1", func(b *testing.B) {
		p.measure(b, func() {
			conn, br := rawClient(b, p.addr, p.tls)
			conn.Write(hello)
			in := make([]byte, 64)
			if _, err := readFrame(br, in); err != nil {
				b.Fatal(err)
			}
			conn.Write(closeFrame)
			readFrame(br, in) // the close reply
			conn.Close()
		})
	})
	handshakeH2 := func(c *benchH2) {
		id := c.open(b, "/wss/x")
		c.write(id, hello)
		in := make([]byte, 64)
		if err := c.readMessage(id, in); err != nil {
			b.Fatal(err)
		}
		c.write(id, closeFrame)
		c.readMessage(id, in) // the close reply
		c.waitEnd(b, id)      // the proxy ends the stream once both closes passed
	}
	b.Run("handshake/h2-conn", func(b *testing.B) {
		p.measure(b, func() {
			c := dialBenchH2(b, p.addr, p.tls)
			handshakeH2(c)
			c.conn.Close()
		})
	})
	b.Run("handshake/h2-stream", func(b *testing.B) {
		c := dialBenchH2(b, p.addr, p.tls)
		defer c.conn.Close()
		p.measure(b, func() { handshakeH2(c) })
	})
}

// proxyProcess is a wssproxy binary running for a benchmark.
type proxyProcess struct {
	pid  int
	addr string
	tls  *tls.Config
}

// startProxyProcess builds and runs wssproxy with routes (path, backend,
// …) until the benchmark ends.
func startProxyProcess(b *testing.B, routes ...string) *proxyProcess {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "wssproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wssproxy").CombinedOutput(); err != nil {
		b.Fatalf("build wssproxy: %v\n%s", err, out)
	}
	cert, clientTLS := testutil.Cert(b)
	certFile, keyFile := testutil.WriteKeyPair(b, cert)
	conf := fmt.Sprintf("listen = \"127.0.0.1:0\"\nlog_level = \"info\"\nhttp2_websockets = true\n[tls]\ncert = %q\nkey = %q\n[admin]\nlisten = \"\"\n", certFile, keyFile)
	for i := 0; i+1 < len(routes); i += 2 {
		conf += fmt.Sprintf("[[route]]\npath = %q\nbackend = %q\nping_interval = \"0s\"\n", routes[i], routes[i+1])
	}
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(conf), 0o600)
	cmd := exec.Command(bin, "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if _, addr, ok := strings.Cut(sc.Text(), "msg=listening addr="); ok {
			go io.Copy(io.Discard, stderr)
			return &proxyProcess{pid: cmd.Process.Pid, addr: strings.Fields(addr)[0], tls: clientTLS}
		}
	}
	b.Fatal("wssproxy did not say where it listens")
	return nil
}

// cpu is the process's user and system time so far.
func (p *proxyProcess) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ 100
}

// measure runs op b.N times and reports the proxy's CPU per op.
func (p *proxyProcess) measure(b *testing.B, op func()) {
	b.ReportAllocs()
	cpu0, self0 := p.cpu(b), cpuTime()
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64(p.cpu(b)-cpu0)/float64(b.N), "proxy-cpu-ns/op")
	b.ReportMetric(float64(cpuTime()-self0)/float64(b.N), "peers-cpu-ns/op")
}

// benchH2 is a one-goroutine HTTP/2 client for benchmarks: it sends DATA
// within the server's windows and returns receive window in halves, as
// browsers do.
type benchH2 struct {
	conn     *tls.Conn
	fr       *http2.Framer
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	nextID   uint32
	maxFrame int
	connSend int64
	initSend int64
	send     map[uint32]int64
	unacked  map[uint32]int // received, window not yet returned (0: the connection)
	buf      []byte         // DATA received on the stream being read
	ended    map[uint32]bool
}

const benchH2Window = 1 << 20

func dialBenchH2(b *testing.B, addr string, cfg *tls.Config) *benchH2 {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchH2{conn: tc, fr: http2.NewFramer(tc, bufio.NewReaderSize(tc, 64<<10)), nextID: 1, maxFrame: 16384,
		connSend: 65535, initSend: 65535, send: map[uint32]int64{}, unacked: map[uint32]int{}, ended: map[uint32]bool{}}
	c.fr.SetReuseFrames()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	io.WriteString(tc, http2.ClientPreface)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: benchH2Window})
	c.fr.WriteWindowUpdate(0, benchH2Window-65535)
	return c
}

// open sends an extended CONNECT for path and reads to its 200.
func (c *benchH2) open(b *testing.B, path string) uint32 {
	id := c.nextID
	c.nextID += 2
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
		{":path", path}, {":authority", "bench"}, {"sec-websocket-version", "13"}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	c.send[id] = c.initSend
	for {
		f, err := c.next(id)
		if err != nil {
			b.Fatal(err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
			if s := h.PseudoValue("status"); s != "200" {
				b.Fatalf("CONNECT %s: %s", path, s)
			}
			return id
		}
	}
}

// next reads a frame, keeping the windows and answering PINGs.
func (c *benchH2) next(id uint32) (http2.Frame, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			f.ForeachSetting(func(s http2.Setting) error {
				switch s.ID {
				case http2.SettingInitialWindowSize:
					for k := range c.send {
						c.send[k] += int64(s.Val) - c.initSend
					}
					c.initSend = int64(s.Val)
				case http2.SettingMaxFrameSize:
					c.maxFrame = int(s.Val)
				}
				return nil
			})
			c.fr.WriteSettingsAck()
		}
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			c.connSend += int64(f.Increment)
		} else {
			c.send[f.StreamID] += int64(f.Increment)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.fr.WritePing(true, f.Data)
		}
	case *http2.DataFrame:
		n := int(f.Length)
		for _, k := range []uint32{0, f.StreamID} {
			if c.unacked[k] += n; c.unacked[k] >= benchH2Window/2 {
				c.fr.WriteWindowUpdate(k, uint32(c.unacked[k]))
				c.unacked[k] = 0
			}
		}
		if f.StreamID == id {
			c.buf = append(c.buf, f.Data()...)
		}
		if f.StreamEnded() {
			c.ended[f.StreamID] = true
		}
	case *http2.RSTStreamFrame:
		c.ended[f.StreamID] = true
	}
	return f, nil
}

// write sends p on stream id, waiting for window as needed.
func (c *benchH2) write(id uint32, p []byte) error {
	for len(p) > 0 {
		for c.send[id] <= 0 || c.connSend <= 0 {
			if _, err := c.next(0); err != nil {
				return err
			}
		}
		n := min(len(p), c.maxFrame, int(c.send[id]), int(c.connSend))
		if err := c.fr.WriteData(id, false, p[:n]); err != nil {
			return err
		}
		c.send[id] -= int64(n)
		c.connSend -= int64(n)
		p = p[n:]
	}
	return nil
}

// readMessage reads one whole WebSocket frame (unmasked, from the
// backend) on stream id into in.
func (c *benchH2) readMessage(id uint32, in []byte) error {
	for {
		if n, ok := frameLen(c.buf); ok && len(c.buf) >= n {
			if n > len(in) {
				return fmt.Errorf("frame of %d bytes", n)
			}
			copy(in, c.buf[:n])
			c.buf = append(c.buf[:0], c.buf[n:]...)
			return nil
		}
		if c.ended[id] {
			return io.ErrUnexpectedEOF
		}
		if _, err := c.next(id); err != nil {
			return err
		}
	}
}

// waitEnd reads until stream id has ended.
func (c *benchH2) waitEnd(b *testing.B, id uint32) {
	for !c.ended[id] {
		if _, err := c.next(id); err != nil {
			b.Fatal(err)
		}
	}
	delete(c.send, id)
	delete(c.ended, id)
	delete(c.unacked, id)
	c.buf = c.buf[:0]
}

// frameLen is the length of the unmasked frame at the start of p, once
// its header is there.
func frameLen(p []byte) (int, bool) {
	h, size := wsframe.ParseHeader(p)
	if size == 0 {
		return 0, false
	}
	return size + int(h.Length), true
}
