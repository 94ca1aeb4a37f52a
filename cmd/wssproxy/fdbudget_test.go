package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// fdLimit is the open file limit the process under attack runs with: a
// few thousand, where the attack asks for 20,000 tunnels.
const fdLimit = 3000

// TestDescriptorBudget guards issue 29's "every descriptor counted": a
// wssproxy process limited to 3,000 open files, flooded from one address
// (127.0.0.1) with 20,000 WebSocket tunnels (200 HTTP/2 connections × 100
// extended-CONNECT streams; or a few connections at a raised
// h2_max_streams; or HTTP/1.1 handshakes and HTTP/2 streams mixed), never
// runs out of descriptors. Every stream or handshake is answered at once,
// 200 (101) or 503 (a connection over the budget is closed at accept):
// none hangs, none gets 502. The refusals are counted
// (wssproxy_requests_refused_total) and logged at warn a line a second
// at most. Throughout, a tunnel opened before the flood echoes, /metrics
// answers on the admin listener, and both backends stay up with no dial
// error counted against them. With the default per-address share, a new
// client from another address (127.0.0.2) opens a WebSocket over
// HTTP/1.1 and over HTTP/2 and echoes; with no share, the flood takes
// the whole budget, new connections are closed at accept, and once the
// flood leaves a new client is served again.
//
// Before the budget, the first case failed: the proxy opened backend
// connections until EMFILE, its own "too many open files" answered
// streams 502 and took the backends out of rotation, and neither the new
// client nor /metrics got an answer.
//
// The cases run one after another: each holds a few thousand descriptors
// of this process too (the backends' ends of the tunnels).
func TestDescriptorBudget(t *testing.T) {
	t.Parallel()
	testutil.Need(t, runtime.GOOS == "linux", "Linux: prlimit(1), and loopback addresses besides 127.0.0.1")
	prlimit, err := exec.LookPath("prlimit")
	testutil.Need(t, err == nil, "prlimit(1) (util-linux)")
	bin := buildBinary(t)
	for _, tc := range []struct {
		name           string
		conf           string // extra top-level keys
		h1             int    // HTTP/1.1 WebSocket handshakes from the flooding address
		conns, streams int    // HTTP/2 connections from it, and streams on each
		whole          bool   // no per-address share: the flood takes the whole budget
	}{
		{name: "HTTP/2 streams", conns: 200, streams: 100},
		{name: "HTTP/2 streams at a raised h2_max_streams", conf: "h2_max_streams = 4000", conns: 5, streams: 4000},
		{name: "HTTP/1.1 and HTTP/2 mixed, the whole budget", conf: "h2_max_streams = 4000\nmax_descriptors_per_ip = 0",
			h1: 400, conns: 100, streams: 100, whole: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testutil.Deadline(t)
			var backends []string
			for range 2 { // two, so that a failed dial could take one out of rotation
				backends = append(backends, fmt.Sprintf("%q", "ws://"+testutil.Serve(t, echo.Handler(echo.Options{}))))
			}
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "127.0.0.1:0"
close_spread = "0s"
http2_websockets = true # the streams' lever exists only with it on
%s
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backends = [%s]
`, tc.conf, strings.Join(backends, ", "))), 0o600)
			p := &proc{cmd: exec.Command(prlimit, fmt.Sprintf("--nofile=%d:%d", fdLimit, fdLimit), bin, "-config", cfg), logs: &testutil.Logs{}}
			p.cmd.Stderr = p.logs
			p.start(t)
			p.addr = p.logs.Wait(t, ctx, `msg=listening addr=(\S+)`)
			defer func() {
				if t.Failed() {
					t.Logf("wssproxy's log lines, by level and message:\n%s", logSummary(p.logs.String()))
				}
			}()
			admin := p.logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)

			// A tunnel from before the flood, from a third address.
			before, _, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: sourceClient("127.0.0.3")})
			if err != nil {
				t.Skipf("no WebSocket from 127.0.0.3 (a loopback address other than 127.0.0.1 is Linux's): %v", err)
			}
			defer before.CloseNow()
			wsEcho(t, ctx, before, "before")

			f := flood(ctx, p.addr, "127.0.0.1", tc.h1, tc.conns, tc.streams)
			defer f.close()
			t.Logf("flood from 127.0.0.1: %v", f.outcomes)
			refused, closed := 0, 0 // answered 503; connections closed at accept
			for o, n := range f.outcomes {
				switch o {
				case "101", "200":
				case "503":
					refused += n
				case "closed at accept":
					closed += n
				default:
					t.Errorf("%d streams or handshakes answered %s, want 200 (101) or 503, or the connection closed at accept", n, o)
				}
			}
			if refused == 0 {
				t.Errorf("nothing refused: 20,000 tunnels do not fit in %d descriptors", fdLimit)
			}

			wsEcho(t, ctx, before, "during")
			if code, body := get(t, "http://"+admin+"/healthz"); code != http.StatusOK {
				t.Errorf("/healthz during the flood: %d %q", code, body)
			}
			m := scrape(t, admin)
			up := 0
			for k, v := range m {
				switch {
				case strings.HasPrefix(k, "wssproxy_backend_up{"):
					up++
					if v != "1" {
						t.Errorf("%s = %s: a backend taken out of rotation for the proxy's own fault", k, v)
					}
				case strings.HasPrefix(k, "wssproxy_backend_dial_errors_total"):
					t.Errorf("%s = %s: the proxy's own shortage counted against a backend", k, v)
				}
			}
			if up != 2 {
				t.Errorf("%d wssproxy_backend_up series, want 2", up)
			}
			// Every descriptor counted: the flood holds its share (a
			// quarter of the budget, the default) beside the tunnel from
			// before, or the whole budget; never more.
			budget, _ := strconv.Atoi(m["wssproxy_descriptor_budget"])
			want, kind := budget/4+2, "limit-descriptors-per-ip"
			if tc.whole {
				want, kind = budget, "limit-descriptors"
			}
			if budget != fdLimit-256 || m["wssproxy_descriptors"] != strconv.Itoa(want) {
				t.Errorf("wssproxy_descriptors = %s of a budget of %d, want %d of %d", m["wssproxy_descriptors"], budget, want, fdLimit-256)
			}
			if got := m[`wssproxy_requests_refused_total{kind="`+kind+`"}`]; got != strconv.Itoa(refused) {
				t.Errorf(`wssproxy_requests_refused_total{kind="%s"} = %q, want the %d answered 503`, kind, got, refused)
			}
			if got := m[`wssproxy_connections_refused_total{listener="tls"}`]; closed > 0 && got != strconv.Itoa(closed) {
				t.Errorf(`wssproxy_connections_refused_total{listener="tls"} = %q, want the %d closed at accept`, got, closed)
			}
			if n := len(p.logs.Lines("level=ERROR")); n > 0 {
				t.Errorf("%d error lines: %q", n, p.logs.Lines("level=ERROR")[0])
			}
			warned := regexp.MustCompile(`level=WARN msg="[^"]*descriptor budget[^"]*" .*refused=(\d+)`)
			lines, logged := 0, 0
			for !t.Failed() && logged < refused+closed { // a line a second: the last may be a second away
				lines, logged = 0, 0
				for _, l := range warned.FindAllStringSubmatch(p.logs.String(), -1) {
					n, _ := strconv.Atoi(l[1])
					lines, logged = lines+1, logged+n
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%d of %d refusals logged at warn", logged, refused+closed)
				case <-time.After(10 * time.Millisecond):
				}
			}
			if lines >= refused+closed {
				t.Errorf("%d warn lines for %d refusals: not one a second", lines, refused+closed)
			}

			if !tc.whole {
				// Another address is served, over HTTP/1.1 and HTTP/2.
				c, _, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: sourceClient("127.0.0.2")})
				if err != nil {
					t.Fatalf("a new client from 127.0.0.2 during the flood: %v", err)
				}
				defer c.CloseNow()
				wsEcho(t, ctx, c, "tom")
				h := dialH2From(t, p.addr, "127.0.0.2")
				h.connect(1, "/wss")
				if status := h.status(1); status != "200" {
					t.Fatalf("an HTTP/2 stream from 127.0.0.2 during the flood: %s, want 200", status)
				}
				h.echo(1, "tom")
				return
			}
			// The whole budget taken: a new connection is closed at once,
			// and served once the flood has left.
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			c, err := d.DialContext(ctx, "tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			if !closedByServer(c, bufio.NewReader(c)) {
				t.Error("a new connection with the budget taken kept open")
			}
			c.Close()
			f.close()
			wsEcho(t, ctx, before, "after")
			again, _, err := websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: sourceClient("127.0.0.2")})
			for err != nil && ctx.Err() == nil { // until the flood's tunnels have closed
				again, _, err = websocket.Dial(ctx, "wss://"+p.addr+"/wss", &websocket.DialOptions{HTTPClient: sourceClient("127.0.0.2")})
			}
			if err != nil {
				t.Fatalf("a new client once the flood left: %v", err)
			}
			defer again.CloseNow()
			wsEcho(t, ctx, again, "tom")
		})
	}
}

// logSummary counts a log's lines by level and message.
func logSummary(log string) string {
	re := regexp.MustCompile(`level=(\w+) msg=("[^"]*"|\S+)(?:.* (reason=\S+))?`)
	n := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		n[strings.TrimSpace(m[1]+" "+m[2]+" "+m[3])]++
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(n)) {
		fmt.Fprintf(&b, "%6d %s\n", n[k], k)
	}
	return b.String()
}

// wsEcho sends msg on c and checks the echo.
func wsEcho(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q %v", msg, got, err)
	}
}

// floodRun is a flood's connections, held until close, and what each
// handshake and stream was answered.
type floodRun struct {
	mu       sync.Mutex
	outcomes map[string]int
	conns    []net.Conn
	readers  sync.WaitGroup
	once     sync.Once
}

func (f *floodRun) note(o string, n int) {
	f.mu.Lock()
	f.outcomes[o] += n
	f.mu.Unlock()
}

// close closes the flood's connections and waits for their readers.
func (f *floodRun) close() {
	f.once.Do(func() {
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.readers.Wait()
	})
}

// flood opens, from the local address from, h1 HTTP/1.1 WebSocket
// handshakes and conns HTTP/2 connections of streams extended CONNECTs
// each, and returns once every one has been answered (or ctx has ended).
// At most 16 connections are being opened at a time; those answered are
// held open.
func flood(ctx context.Context, addr, from string, h1, conns, streams int) *floodRun {
	f := &floodRun{outcomes: map[string]int{}}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}}
	dial := func(proto string) net.Conn {
		d := *d
		d.Config = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			f.note("closed at accept", 1)
			return nil
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		return c
	}
	for i := range h1 + conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if i < h1 {
				c := dial("http/1.1")
				if c != nil {
					f.note(h1Handshake(c), 1)
				}
				return
			}
			if c := dial("h2"); c != nil {
				f.h2Streams(ctx, c, streams)
			}
		})
	}
	wg.Wait()
	return f
}

// h1Handshake sends a WebSocket handshake on c and returns the answer's
// status ("closed at accept" if none came).
func h1Handshake(c net.Conn) string {
	io.WriteString(c, "GET /wss HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "closed at accept"
	}
	return strconv.Itoa(resp.StatusCode)
}

// h2Streams opens n extended-CONNECT streams on the HTTP/2 connection c
// and notes their answers: the status, or the reset. A reader goroutine
// keeps reading c (and answering pings) until c is closed, so that the
// streams answered 200 stay open.
func (f *floodRun) h2Streams(ctx context.Context, c net.Conn, n int) {
	h := &h2Flood{f: f, n: n, answered: map[uint32]string{}, settled: make(chan struct{}), settings: make(chan struct{})}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	// The preface first, before the reader may acknowledge the server's
	// SETTINGS: a few bytes, which the socket takes at once.
	io.WriteString(c, http2.ClientPreface)
	h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	h.fr.WriteWindowUpdate(0, 1<<30)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	f.readers.Go(func() {
		defer stop()
		h.read()
	})
	select {
	case <-h.settings:
	case <-h.settled:
		return
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for i := range n {
		hbuf.Reset()
		for _, hf := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
			{":path", "/wss"}, {":authority", "localhost"}, {"sec-websocket-version", "13"}} {
			enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
		}
		err := h.write(func(fr *http2.Framer) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndHeaders: true})
		})
		if err != nil {
			break
		}
	}
	<-h.settled
}

// h2Flood is one HTTP/2 connection of a flood.
type h2Flood struct {
	f        *floodRun
	n        int
	fr       *http2.Framer
	wmu      sync.Mutex    // frames out
	settings chan struct{} // closed at the server's first SETTINGS
	settled  chan struct{} // closed when every stream has its answer, or none will come

	mu       sync.Mutex
	answered map[uint32]string // nil once settled
}

func (h *h2Flood) write(fn func(*http2.Framer) error) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return fn(h.fr)
}

// read reads frames until the connection ends.
func (h *h2Flood) read() {
	first := true
	for {
		fr, err := h.fr.ReadFrame()
		if err != nil {
			h.settle("no answer: " + err.Error())
			return
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				h.write(func(w *http2.Framer) error { return w.WriteSettingsAck() })
				if first {
					first = false
					close(h.settings)
				}
			}
		case *http2.PingFrame:
			if !fr.IsAck() {
				h.write(func(w *http2.Framer) error { return w.WritePing(true, fr.Data) })
			}
		case *http2.MetaHeadersFrame:
			h.answer(fr.StreamID, fr.PseudoValue("status"))
		case *http2.RSTStreamFrame:
			h.answer(fr.StreamID, "reset "+fr.ErrCode.String())
		case *http2.GoAwayFrame:
			h.settle("GOAWAY " + fr.ErrCode.String())
		}
	}
}

// answer notes stream id's first answer.
func (h *h2Flood) answer(id uint32, o string) {
	h.mu.Lock()
	if h.answered == nil {
		h.mu.Unlock()
		return
	}
	if _, ok := h.answered[id]; !ok {
		h.answered[id] = o
	}
	all := len(h.answered) == h.n
	h.mu.Unlock()
	if all {
		h.settle("")
	}
}

// settle notes the answers, and why for the streams without one.
func (h *h2Flood) settle(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.answered == nil {
		return
	}
	for _, o := range h.answered {
		h.f.note(o, 1)
	}
	if left := h.n - len(h.answered); left > 0 {
		h.f.note(why, left)
	}
	h.answered = nil
	close(h.settled)
}
