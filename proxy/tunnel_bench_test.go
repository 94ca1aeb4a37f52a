package proxy_test

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
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
	h := buf[len(buf)-14:] // scratch for the header: a local array would escape
	buf = buf[:len(buf)-14]
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return 0, err
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(br, h[2:10]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint64(h[2:10]))
	}
	var mask []byte
	if h[1]&0x80 != 0 {
		mask = h[10:14:14]
		if _, err := io.ReadFull(br, mask); err != nil {
			return 0, err
		}
	}
	if n > len(buf) {
		return 0, fmt.Errorf("frame of %d bytes", n)
	}
	if _, err := io.ReadFull(br, buf[:n]); err != nil {
		return 0, err
	}
	if mask != nil {
		for i := range n {
			buf[i] ^= mask[i&3]
		}
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
		i := 10
		switch {
		case n < 126:
			i -= 2
			out[i+1] = byte(n)
		case n <= 0xFFFF:
			i -= 4
			out[i+1] = 126
			binary.BigEndian.PutUint16(out[i+2:], uint16(n))
		default:
			i -= 10
			out[i+1] = 127
			binary.BigEndian.PutUint64(out[i+2:], uint64(n))
		}
		out[i] = 0x82
		if _, err := conn.Write(out[i : 10+n]); err != nil {
			return
		}
	}
}
