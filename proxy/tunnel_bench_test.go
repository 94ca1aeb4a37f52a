package proxy_test

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// BenchmarkTunnel measures the proxy's cost per forwarded message: a
// hand-written client sends a masked frame over real loopback TLS, the
// proxy forwards it to a hand-written backend that echoes it unmasked, and
// the proxy forwards the echo back. Neither peer allocates after the
// handshake, so allocs/op is the proxy's (and crypto/tls's) per round trip:
// two forwarded messages. cpu-ns/op is the whole process's CPU.
func BenchmarkTunnel(b *testing.B) {
	backend := rawBackend(b, rawEcho)
	e := startProxy(b, route("/wss", "ws://"+backend))
	for _, size := range []int{32, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			conn, br := rawClient(b, e.addr, e.tls)
			defer conn.Close()
			out := frame(true, 0, 0x2, make([]byte, size), false) // masked, as a client's
			in := make([]byte, size+14)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := conn.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := readFrame(br, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// readFrame reads one frame into buf without allocating, unmasking it if
// masked, and returns its payload length; an error if it does not fit.
func readFrame(br *bufio.Reader, buf []byte) (int, error) {
	scratch := buf[len(buf)-wsframe.MaxHeaderLen:] // a local array would escape
	buf = buf[:len(buf)-wsframe.MaxHeaderLen]
	h, err := wsframe.ReadHeader(br, scratch)
	if err != nil {
		return 0, err
	}
	if h.Length > uint64(len(buf)) {
		return 0, fmt.Errorf("frame of %d bytes", h.Length)
	}
	n := int(h.Length)
	if _, err := io.ReadFull(br, buf[:n]); err != nil {
		return 0, err
	}
	if h.Masked {
		wsframe.MaskCopy(buf[:n], buf[:n], h.Mask)
	}
	return n, nil
}

// rawClient connects over TLS and upgrades /wss by hand.
func rawClient(b testing.TB, addr string, cfg *tls.Config) (net.Conn, *bufio.Reader) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(conn, "GET /wss HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

// rawEcho is a backend that answers the handshake and echoes each frame
// unmasked, allocating nothing per frame.
func rawEcho(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	br := bufio.NewReaderSize(conn, 64<<10)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
	out := make([]byte, 10+(1<<20)+14)
	for {
		n, err := readFrame(br, out[10:])
		if err != nil {
			return
		}
		// The unmasked header goes right before the payload: one write.
		h := wsframe.Header{Fin: true, Opcode: wsframe.OpBinary, Length: uint64(n)}
		i := 10 - wsframe.HeaderSize(h)
		wsframe.AppendHeader(out[i:i], h)
		if _, err := conn.Write(out[i : 10+n]); err != nil {
			return
		}
	}
}
