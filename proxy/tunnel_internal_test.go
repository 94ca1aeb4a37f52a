package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// tcpPair is a real loopback TCP connection: the proxy's end and the
// peer's.
func tcpPair(t *testing.T) (proxyEnd, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	proxyEnd, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxyEnd.Close(); peer.Close() })
	return proxyEnd, peer
}

// fill writes to c until its socket buffers are full: the peer never reads.
func fill(t *testing.T, c net.Conn) {
	t.Helper()
	c.(*net.TCPConn).SetWriteBuffer(4096)
	junk := make([]byte, 64<<10)
	for range 10000 {
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Write(junk); errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetWriteDeadline(time.Time{})
			return
		}
	}
	t.Fatal("socket buffers never filled")
}

// TestPingIntoFullSocket guards dead-peer detection when the proxy's own
// ping cannot be written: a client that reads nothing has filled its
// socket, so the ping's write waits (send_timeout is an hour here). The
// ping timeout is armed before that write, so it still fires: the client is
// dropped and the backend gets 1001.
func TestPingIntoFullSocket(t *testing.T) {
	clientEnd, clientPeer := tcpPair(t)
	backendEnd, backendPeer := tcpPair(t)
	clientPeer.(*net.TCPConn).SetReadBuffer(4096)
	fill(t, clientEnd)
	rt := &route{name: "test", open: new(atomic.Int64), pingInterval: 20 * time.Millisecond, pingTimeout: 20 * time.Millisecond, sendTimeout: time.Hour}
	tun := newTunnel(rt, &upstream{name: "backend"}, clientEnd, backendEnd, time.Now())
	tun.log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go tun.run(context.Background(), ctx, nil, nil, func() { close(done) })

	backendPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(backendPeer)
	hdr := make([]byte, 6)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatalf("backend got no close frame: %v", err)
	}
	h, size := wsframe.ParseHeader(hdr)
	frame := append(hdr, make([]byte, h.Length)...)
	if _, err := io.ReadFull(br, frame[size:]); err != nil {
		t.Fatal(err)
	}
	if p := wsframe.ControlPayload(nil, h, frame); h.Opcode != wsframe.OpClose || len(p) < 2 || p[0] != 0x03 || p[1] != 0xe9 {
		t.Fatalf("backend got opcode %d payload %q, want close 1001", h.Opcode, p)
	}
	backendPeer.Close()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("tunnel did not end")
	}
	if tun.reason != "client unresponsive" {
		t.Errorf("reason %q, want client unresponsive", tun.reason)
	}
}

// TestJitter guards max_lifetime's jitter: within 10% either side, and not
// one value for every tunnel.
func TestJitter(t *testing.T) {
	const d = time.Hour
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := jitter(d)
		if j < d-d/10 || j > d+d/10 {
			t.Fatalf("jitter(%v) = %v, want within 10%%", d, j)
		}
		seen[j] = true
	}
	if len(seen) < 900 {
		t.Errorf("%d distinct values in 1000, want them spread", len(seen))
	}
}
