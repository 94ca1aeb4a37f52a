package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// The conformance suite: the essence of Autobahn, run here. Each case's
// client frames are written by hand and sent both straight to a strict
// backend (coder/websocket) and through wssproxy; what the client gets
// back, byte for byte, and how the backend saw the connection end must be
// the same. Where the proxy itself acts, the case says what differs.

// confCase is one conformance case.
type confCase struct {
	name   string
	frames []byte // what the client sends after the handshake
	// reset: the client resets TCP after sending frames instead of
	// reading to the end.
	reset bool
	// proxyBackendEnd, when set, is how the backend sees the end through
	// the proxy, where it differs from direct (the proxy tells it why).
	proxyBackendEnd string
	// proxyClientGets, when set, is what the client gets through the proxy
	// where it differs from direct: the backend dropped TCP without a close
	// frame, so the proxy sends 1014 "backend went away" (issue 4).
	proxyClientGets []byte
}

// backendWentAway is the proxy's close frame to a client whose backend
// vanished without one.
var backendWentAway = append([]byte{0x88, 19, 0x03, 0xf6}, "backend went away"...)

var confMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frame builds one client frame: fin, rsv bits, opcode, payload, masked
// unless unmasked.
func frame(fin bool, rsv, op byte, payload []byte, unmasked bool) []byte {
	b0 := rsv<<4 | op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mb := byte(0x80)
	if unmasked {
		mb = 0
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, mb|byte(n))
	case n <= 0xffff:
		out = append(out, mb|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mb|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	out = append(out, confMask[:]...)
	for i, c := range payload {
		out = append(out, c^confMask[i%4])
	}
	return out
}

func text(s string) []byte { return frame(true, 0, 0x1, []byte(s), false) }
func binMsg(n int) []byte  { return frame(true, 0, 0x2, bytes.Repeat([]byte{0xab}, n), false) }
func closeWith(code int, reason string) []byte {
	return frame(true, 0, 0x8, append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...), false)
}

var normalClose = closeWith(1000, "")

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func conformanceCases() []confCase {
	var cs []confCase
	add := func(name string, frames ...[]byte) { cs = append(cs, confCase{name: name, frames: cat(frames...)}) }
	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 70000}
	for _, n := range sizes {
		add(fmt.Sprintf("text %d bytes", n), frame(true, 0, 0x1, bytes.Repeat([]byte("a"), n), false), normalClose)
		add(fmt.Sprintf("binary %d bytes", n), binMsg(n), normalClose)
	}
	for _, parts := range []int{2, 3, 5, 16} {
		for _, size := range []int{1, 125, 4000} {
			var fs [][]byte
			for i := range parts {
				op := byte(0x0)
				if i == 0 {
					op = 0x1
				}
				fs = append(fs, frame(i == parts-1, 0, op, bytes.Repeat([]byte("f"), size), false))
			}
			add(fmt.Sprintf("text in %d fragments of %d", parts, size), append(fs, normalClose)...)
		}
	}
	for _, n := range []int{1, 3} {
		var fs [][]byte
		fs = append(fs, frame(false, 0, 0x1, []byte("start"), false))
		for range n {
			fs = append(fs, frame(true, 0, 0x9, []byte("ping"), false), frame(false, 0, 0x0, []byte("mid"), false))
		}
		fs = append(fs, frame(true, 0, 0x0, []byte("end"), false), normalClose)
		add(fmt.Sprintf("fragments with %d pings between", n), fs...)
	}
	add("zero-length fragments", frame(false, 0, 0x1, nil, false), frame(false, 0, 0x0, nil, false), frame(true, 0, 0x0, nil, false), normalClose)
	for _, n := range []int{0, 1, 125} {
		add(fmt.Sprintf("ping with %d bytes", n), frame(true, 0, 0x9, bytes.Repeat([]byte("p"), n), false), normalClose)
		add(fmt.Sprintf("unsolicited pong with %d bytes", n), frame(true, 0, 0xA, bytes.Repeat([]byte("p"), n), false), normalClose)
	}
	add("ping with 126 bytes (oversized control)", frame(true, 0, 0x9, bytes.Repeat([]byte("p"), 126), false), normalClose)
	add("close with 200 bytes (oversized control)", frame(true, 0, 0x8, append([]byte{3, 232}, bytes.Repeat([]byte("r"), 198)...), false))
	add("fragmented ping", frame(false, 0, 0x9, []byte("pi"), false), frame(true, 0, 0x0, []byte("ng"), false), normalClose)
	add("fragmented close", frame(false, 0, 0x8, []byte{3, 232}, false), frame(true, 0, 0x0, nil, false))
	for rsv := byte(1); rsv <= 7; rsv++ {
		add(fmt.Sprintf("text with rsv %03b", rsv), frame(true, rsv, 0x1, []byte("rsv"), false), normalClose)
		add(fmt.Sprintf("ping with rsv %03b", rsv), frame(true, rsv, 0x9, []byte("rsv"), false), normalClose)
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		add(fmt.Sprintf("reserved opcode %#x", op), frame(true, 0, op, []byte("x"), false), normalClose)
	}
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(fmt.Sprintf("close code %d", code), closeWith(code, "bye"))
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(fmt.Sprintf("invalid close code %d", code), closeWith(code, ""))
	}
	add("close with a 1-byte payload", frame(true, 0, 0x8, []byte{3}, false))
	add("close with no payload", frame(true, 0, 0x8, nil, false))
	add("close with a 123-byte reason", closeWith(1000, strings.Repeat("r", 123)))
	add("close reason not UTF-8", closeWith(1000, "\xff\xfe"))
	for i, s := range []string{"\xff", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\x80b"} {
		add(fmt.Sprintf("text not UTF-8 #%d", i+1), frame(true, 0, 0x1, []byte(s), false), normalClose)
	}
	add("text UTF-8 split across fragments", frame(false, 0, 0x1, []byte("\xce"), false), frame(true, 0, 0x0, []byte("\xba"), false), normalClose)
	// coder/websocket drops these connections without a close frame.
	vanishes := func(name string, frames ...[]byte) {
		cs = append(cs, confCase{name: name, frames: cat(frames...), proxyClientGets: backendWentAway})
	}
	vanishes("unmasked text", frame(true, 0, 0x1, []byte("no mask"), true), normalClose)
	vanishes("unmasked close", frame(true, 0, 0x8, []byte{3, 232}, true))
	add("close in the middle of a fragmented message", frame(false, 0, 0x1, []byte("part"), false), normalClose)
	add("continuation without a start", frame(true, 0, 0x0, []byte("cont"), false), normalClose)
	add("new message before the last finished", frame(false, 0, 0x1, []byte("one"), false), text("two"), normalClose)
	vanishes("64-bit length with the top bit set", []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4})
	add("16-bit length for a short payload", []byte{0x81, 0xfe, 0, 5, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, normalClose)
	add("data after the close", normalClose, text("after"))
	add("two closes", normalClose, normalClose)
	var many [][]byte
	for i := range 100 {
		many = append(many, text(fmt.Sprintf("message %d", i)))
	}
	add("100 pipelined messages", append(many, normalClose)...)
	add("1 MiB binary", binMsg(1<<20), normalClose)
	// Abrupt resets: direct, the backend sees the connection fail; through
	// the proxy, it is told 1001 Going Away, or (mid-frame, where no close
	// frame can be sent) the connection is closed.
	cs = append(cs,
		confCase{name: "reset after the handshake", reset: true, proxyBackendEnd: "close 1001"},
		// A pong, which nothing answers: no echo can race the reset.
		confCase{name: "reset after a whole frame", frames: frame(true, 0, 0xA, []byte("hi"), false), reset: true, proxyBackendEnd: "close 1001"},
		confCase{name: "reset inside a frame header", frames: text("hi")[:1], reset: true, proxyBackendEnd: "failed"},
		confCase{name: "reset inside a payload", frames: binMsg(5000)[:100], reset: true, proxyBackendEnd: "failed"},
		confCase{name: "reset inside a fragmented message", frames: frame(false, 0, 0x1, []byte("part"), false), reset: true, proxyBackendEnd: "close 1001"},
	)
	return cs
}

// confBackend is a strict echo backend that reports how each connection
// ended: "close N" or "failed".
func confBackend(t *testing.T) (string, chan string) {
	ends := make(chan string, 1)
	addr := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(2 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				if code := websocket.CloseStatus(err); code != -1 {
					ends <- fmt.Sprintf("close %d", code)
				} else {
					ends <- "failed"
				}
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				ends <- "failed"
				return
			}
		}
	}))
	return addr, ends
}

// runCase sends c's frames over conn (after the opening handshake) and
// returns everything the server sent back until it closed.
func runCase(t *testing.T, conn net.Conn, c confCase) []byte {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /wss HTTP/1.1\r\nHost: conformance\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	conn.Write(c.frames)
	if c.reset {
		tcp := conn
		if tc, ok := conn.(*tls.Conn); ok {
			tcp = tc.NetConn()
		}
		tcp.(*net.TCPConn).SetLinger(0)
		conn.Close()
		return nil
	}
	got, _ := io.ReadAll(br)
	return got
}

// TestConformance guards that the proxy is invisible to the WebSocket
// protocol: for every case, the client gets the same bytes through the
// proxy as directly, and the backend sees the same end (or the one the case
// documents).
func TestConformance(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := testutil.Context(t, 120*time.Second)
	backend, ends := confBackend(t)
	e := startProxy(t, route("/wss", "ws://"+backend))
	cases := conformanceCases()
	if len(cases) < 100 {
		t.Fatalf("%d cases, want at least 100", len(cases))
	}
	end := func() string {
		select {
		case s := <-ends:
			return s
		case <-ctx.Done():
			return "no end seen"
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			direct, err := net.Dial("tcp", backend)
			if err != nil {
				t.Fatal(err)
			}
			want := runCase(t, direct, c)
			direct.Close()
			wantEnd := end()

			proxied, err := tls.Dial("tcp", e.addr, e.tls)
			if err != nil {
				t.Fatal(err)
			}
			got := runCase(t, proxied, c)
			proxied.Close()
			gotEnd := end()

			if c.proxyClientGets != nil {
				if len(want) != 0 {
					t.Errorf("directly the client got %q; the case expects nothing", trim(want))
				}
				want = c.proxyClientGets
			}
			if !bytes.Equal(got, want) {
				t.Errorf("client got %d bytes through the proxy, %d directly:\n proxy  %q\n direct %q", len(got), len(want), trim(got), trim(want))
			}
			if c.proxyBackendEnd != "" {
				wantEnd = c.proxyBackendEnd
			}
			if gotEnd != wantEnd {
				t.Errorf("backend saw %q through the proxy, want %q", gotEnd, wantEnd)
			}
		})
	}
	waitTunnels(t, ctx, e, 0)
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return append(b[:80:80], "…"...)
	}
	return b
}
