package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/internal/wsframe"
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
	// where it differs from direct, because the proxy itself acts: a frame
	// it cannot follow gets 1002.
	proxyClientGets []byte
}

var confMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frame builds one client frame: fin, rsv bits, opcode, payload, masked
// unless unmasked.
func frame(fin bool, rsv, op byte, payload []byte, unmasked bool) []byte {
	h := wsframe.Header{Fin: fin, RSV: rsv, Opcode: op, Masked: !unmasked, Mask: confMask, Length: uint64(len(payload))}
	out := wsframe.AppendHeader(nil, h)
	n := len(out)
	out = append(out, payload...)
	if !unmasked {
		wsframe.MaskCopy(out[n:], payload, confMask)
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
	// coder/websocket drops these connections without a close frame; the
	// client has sent its close, so through the proxy it sees the drop too.
	add("unmasked text", frame(true, 0, 0x1, []byte("no mask"), true), normalClose)
	add("unmasked close", frame(true, 0, 0x8, []byte{3, 232}, true))
	add("close in the middle of a fragmented message", frame(false, 0, 0x1, []byte("part"), false), normalClose)
	add("continuation without a start", frame(true, 0, 0x0, []byte("cont"), false), normalClose)
	add("new message before the last finished", frame(false, 0, 0x1, []byte("one"), false), text("two"), normalClose)
	// A length that cannot be followed (RFC 6455 §5.2): coder/websocket
	// drops the connection; the proxy, which cannot follow the stream
	// either, fails it with 1002 both ways (§7.1.7).
	cs = append(cs, confCase{name: "64-bit length with the top bit set", frames: []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		proxyClientGets: append([]byte{0x88, 22, 0x03, 0xea}, "invalid frame length"...), proxyBackendEnd: "close 1002"})
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
	t.Parallel()
	ctx := testutil.Context(t, 120*time.Second)
	backend, ends := confBackend(t)
	e := startProxy(t, route("/wss", "ws://"+backend))
	cases := conformanceCases()
	if len(cases) < 100 {
		t.Fatalf("%d cases, want at least 100", len(cases))
	}
	compareThroughProxy(t, ctx, e, backend, ends, cases)
	waitTunnels(t, ctx, e, 0)
}

// compareThroughProxy runs each case against the backend directly, then
// through e, and reports where the client's bytes or the end the backend
// saw (read from ends) differ, or differ from what the case documents for
// the proxy (proxyClientGets, proxyBackendEnd).
func compareThroughProxy(t *testing.T, ctx context.Context, e *env, backend string, ends <-chan string, cases []confCase) {
	t.Helper()
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
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return append(b[:80:80], "…"...)
	}
	return b
}

// dropBackend is an echo backend that, like some servers (and the fuzzer
// that found the proxy's differences), answers a close frame it finds
// invalid (RFC 6455 §7.4: a code that may not be sent, a 1-byte payload, a
// reason that is not UTF-8, RSV bits, over 125 bytes) by dropping TCP
// without a close frame of its own (§7.1.1 allows it). A valid close is
// echoed, then the connection closed. It reports "close N" or "dropped".
func dropBackend(t *testing.T) (string, chan string) {
	ends := make(chan string, 1)
	addr := rawBackend(t, func(conn net.Conn) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		br, ok := acceptRaw(conn)
		if !ok {
			return
		}
		for {
			b0, payload, err := readClientFrame(br)
			if err != nil {
				ends <- "failed"
				return
			}
			if b0&0x0f != 0x8 {
				conn.Write(frame(true, 0, b0&0x0f, payload, true)) // echo, unmasked
				continue
			}
			if !validClose(b0, payload) {
				ends <- "dropped"
				return
			}
			conn.Write(frame(true, 0, 0x8, payload[:2], true))
			ends <- fmt.Sprintf("close %d", binary.BigEndian.Uint16(payload))
			return
		}
	})
	return addr, ends
}

// validClose reports whether a close frame may be answered (RFC 6455 §5.5,
// §7.4): no RSV bits, a 2-byte code that may be sent, a UTF-8 reason.
func validClose(b0 byte, p []byte) bool {
	if b0&0x70 != 0 || len(p) < 2 || len(p) > 125 || !utf8.Valid(p[2:]) {
		return false
	}
	code := int(binary.BigEndian.Uint16(p))
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1011 || code >= 3000 && code <= 4999
}

// readClientFrame reads one masked frame: its first byte and its payload,
// unmasked.
func readClientFrame(br *bufio.Reader) (byte, []byte, error) {
	var scratch [wsframe.MaxHeaderLen]byte
	h, err := wsframe.ReadHeader(br, scratch[:])
	if err != nil {
		return 0, nil, err
	}
	if !h.Masked || h.Length > 1<<20 {
		return 0, nil, fmt.Errorf("unmasked or huge frame (%d bytes)", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	wsframe.MaskCopy(p, p, h.Mask)
	return scratch[0], p, nil
}

// TestCloseAnsweredByDrop guards the close handshake's edges against a
// backend that answers a bad close by dropping TCP: the client has sent its
// close, so through the proxy it sees the drop, as it does directly, and
// not a 1014 "backend went away" it never asked for. A close over 125
// bytes is recognised as a close. The valid closes are the control: they
// are echoed both ways.
func TestCloseAnsweredByDrop(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	backend, ends := dropBackend(t)
	e := startProxy(t, route("/wss", "ws://"+backend))
	var cases []confCase
	add := func(name string, frames ...[]byte) {
		cases = append(cases, confCase{name: name, frames: cat(frames...)})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(fmt.Sprintf("invalid close code %d", code), closeWith(code, ""))
	}
	add("close with a 1-byte payload", frame(true, 0, 0x8, []byte{3}, false))
	add("close reason not UTF-8", closeWith(1000, "\xff\xfe"))
	for rsv := byte(1); rsv <= 7; rsv++ {
		add(fmt.Sprintf("close with rsv %03b", rsv), frame(true, rsv, 0x8, []byte{3, 232}, false))
	}
	add("close with 200 bytes", text("first"), frame(true, 0, 0x8, append([]byte{3, 232}, bytes.Repeat([]byte("r"), 198)...), false))
	add("valid close 1000", text("hello"), closeWith(1000, "bye"))
	add("valid close 4000", closeWith(4000, ""))
	compareThroughProxy(t, ctx, e, backend, ends, cases)
	waitTunnels(t, ctx, e, 0)
	if lines := e.logs.Lines(`reason="backend vanished"`); len(lines) != 0 {
		t.Errorf("the proxy told a client its backend went away:\n%s", strings.Join(lines, "\n"))
	}
}
