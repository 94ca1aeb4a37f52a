package tunnel

// The tunnel core in memory: both sides are net.Pipe connections served by
// the portable engine, inside a testing/synctest bubble, so timers
// (keepalive, idle_timeout, max_lifetime, send_timeout, the close grace)
// run in fake time: each test takes milliseconds and runs the same way
// every time.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// frame is one frame as a peer read it (payload unmasked).
type frame struct {
	op      byte
	fin     bool
	payload []byte
}

func (f frame) code() int {
	if f.op != wsframe.OpClose || len(f.payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

// peer is a test's end of one side: it sends frames (masked, as a client
// does, or not) and reads what the tunnel sends into frames, until the
// end, which goes to ended.
type peer struct {
	t      *testing.T
	c      net.Conn
	mask   bool
	frames chan frame
	ended  chan error
}

func newPeer(t *testing.T, c net.Conn, mask, reading bool) *peer {
	p := &peer{t: t, c: c, mask: mask, frames: make(chan frame, 64), ended: make(chan error, 1)}
	if reading {
		go p.read()
	}
	return p
}

func (p *peer) read() {
	var scratch [wsframe.MaxHeaderLen]byte
	for {
		h, err := wsframe.ReadHeader(p.c, scratch[:])
		if err == nil && h.Length > 1<<24 {
			err = errors.New("frame too long for a test")
		}
		var payload []byte
		if err == nil {
			payload = make([]byte, h.Length)
			_, err = io.ReadFull(p.c, payload)
		}
		if err != nil {
			p.ended <- err
			return
		}
		if h.Masked {
			wsframe.MaskCopy(payload, payload, h.Mask)
		}
		p.frames <- frame{op: h.Opcode, fin: h.Fin, payload: payload}
	}
}

func (p *peer) send(op byte, payload []byte) {
	p.t.Helper()
	var key *[4]byte
	if p.mask {
		key = &[4]byte{1, 2, 3, 4}
	}
	if _, err := p.c.Write(wsframe.AppendFrame(nil, op, payload, key)); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

func (p *peer) sendClose(code int, reason string) {
	p.t.Helper()
	p.send(wsframe.OpClose, append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...))
}

// next is the next frame the tunnel sent this peer.
func (p *peer) next() frame {
	p.t.Helper()
	select {
	case f := <-p.frames:
		return f
	case err := <-p.ended:
		p.t.Fatalf("peer's stream ended (%v), want a frame", err)
	case <-time.After(time.Hour):
		p.t.Fatal("no frame within an hour")
	}
	return frame{}
}

// expectClose reads the next frame and checks it is a close with code.
func (p *peer) expectClose(code int) frame {
	p.t.Helper()
	f := p.next()
	if f.op != wsframe.OpClose || f.code() != code {
		p.t.Fatalf("got opcode %d code %d %q, want close %d", f.op, f.code(), f.payload, code)
	}
	return f
}

// expectEnd waits for the tunnel to end this peer's stream.
func (p *peer) expectEnd() {
	p.t.Helper()
	select {
	case f := <-p.frames:
		p.t.Fatalf("got opcode %d %q, want the end of the stream", f.op, f.payload)
	case <-p.ended:
	case <-time.After(time.Hour):
		p.t.Fatal("stream not ended within an hour")
	}
}

// rig is a tunnel between two in-memory peers.
type rig struct {
	t                *testing.T
	tun              *Tunnel
	client, backend  *peer
	ended            chan End
	clientConnection net.Conn // the tunnel's end of the client's pipe
}

// newRig starts a tunnel with policy p; the backend peer reads unless
// backendReads is false.
func newRig(t *testing.T, p Policy, backendReads bool) *rig {
	cEnd, cPeer := net.Pipe()
	bEnd, bPeer := net.Pipe()
	e := sockio.New(sockio.Options{Portable: true})
	r := &rig{t: t, ended: make(chan End, 1), clientConnection: cEnd}
	r.tun = New(p, e.Conn(cEnd), e.Conn(bEnd), nil, time.Now())
	r.client = newPeer(t, cPeer, true, true)
	r.backend = newPeer(t, bPeer, false, backendReads)
	r.tun.Start(nil, nil, func(e End) { r.ended <- e })
	t.Cleanup(func() { cPeer.Close(); bPeer.Close() })
	return r
}

// rawClientTunnel starts a tunnel with policy p whose client end the test
// reads (or leaves unread) byte by byte: cPeer. The backend is a reading
// peer on bPeer. Both pipes close when the test ends.
func rawClientTunnel(t *testing.T, p Policy) (cPeer, bPeer net.Conn, backend *peer, ended chan End) {
	cEnd, cPeer := net.Pipe()
	bEnd, bPeer := net.Pipe()
	t.Cleanup(func() { cPeer.Close(); bPeer.Close() })
	e := sockio.New(sockio.Options{Portable: true})
	ended = make(chan End, 1)
	tun := New(p, e.Conn(cEnd), e.Conn(bEnd), nil, time.Now())
	tun.Start(nil, nil, func(e End) { ended <- e })
	return cPeer, bPeer, newPeer(t, bPeer, false, true), ended
}

func (r *rig) end() End {
	r.t.Helper()
	select {
	case e := <-r.ended:
		return e
	case <-time.After(time.Hour):
		r.t.Fatal("tunnel did not end within an hour")
	}
	return End{}
}

// TestForwardsUnchanged guards the data path: messages pass both ways,
// byte for byte (masked as they came towards the backend).
func TestForwardsUnchanged(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{}, true)
		r.client.send(wsframe.OpText, []byte("to the backend"))
		if f := r.backend.next(); f.op != wsframe.OpText || string(f.payload) != "to the backend" {
			t.Fatalf("backend got %d %q", f.op, f.payload)
		}
		big := bytes.Repeat([]byte("x"), 300<<10)
		r.backend.send(wsframe.OpBinary, big)
		if f := r.client.next(); f.op != wsframe.OpBinary || !bytes.Equal(f.payload, big) {
			t.Fatalf("client got %d, %d bytes", f.op, len(f.payload))
		}
		r.client.sendClose(1000, "bye")
		r.backend.expectClose(1000)
		r.backend.sendClose(1000, "bye")
		r.backend.c.Close() // the server closes TCP first (RFC 6455 §7.1.1)
		r.client.expectClose(1000)
		r.client.expectEnd()
		e := r.end()
		if e.Reason != ByPeers || e.CloseCode != 1000 || e.ClosedBy != "client" || e.IO != sockio.IOPortable {
			t.Fatalf("end %+v", e)
		}
		if e.In.Bytes == 0 || e.Out.Bytes < int64(len(big)) {
			t.Fatalf("bytes in %d out %d", e.In.Bytes, e.Out.Bytes)
		}
	})
}

// TestCloseHandshake guards a normal close started by either peer: the
// close frame passes, the answer comes back, and the tunnel ends with the
// first close's code and sender; neither side is sent anything of the
// proxy's own.
func TestCloseHandshake(t *testing.T) {
	t.Parallel()
	for _, by := range []string{"client", "backend"} {
		t.Run(by, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Policy{}, true)
				first, second := r.client, r.backend
				if by == "backend" {
					first, second = r.backend, r.client
				}
				first.sendClose(4000, "done")
				second.expectClose(4000)
				second.sendClose(4000, "done")
				first.expectClose(4000)
				first.c.Close()
				second.c.Close()
				e := r.end()
				if e.Reason != ByPeers || e.CloseCode != 4000 || e.ClosedBy != by {
					t.Fatalf("end %+v, want 4000 by %s", e, by)
				}
			})
		})
	}
}

// TestPeerVanishes guards a peer that goes without a close frame: the
// other is sent one (1014 to the client when the backend went, 1001 to
// the backend when the client did) and its answer ends the tunnel; one
// that does not answer is dropped after the close grace.
func TestPeerVanishes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		gone   string
		code   int
		reason Reason
		answer bool
	}{
		{"backend, client answers", "backend", CloseBadGateway, BackendVanished, true},
		{"client, backend answers", "client", CloseGoingAway, ClientVanished, true},
		{"backend, client silent", "backend", CloseBadGateway, BackendVanished, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Policy{}, true)
				gone, other := r.backend, r.client
				if c.gone == "client" {
					gone, other = r.client, r.backend
				}
				gone.c.Close()
				start := time.Now()
				other.expectClose(c.code)
				if c.answer {
					other.sendClose(c.code, "")
				}
				other.expectEnd()
				e := r.end()
				if e.Reason != c.reason || e.CloseCode != c.code || e.ClosedBy != "proxy" {
					t.Fatalf("end %+v", e)
				}
				if waited := time.Since(start); !c.answer && waited != DefaultCloseGrace {
					t.Fatalf("a silent peer was dropped after %v, want the close grace", waited)
				}
			})
		})
	}
}

// TestKeepalive guards pings: a client silent for ping_interval is
// pinged; its pong is the proxy's to consume (the backend never sees it),
// and keeps the tunnel; a client that answers nothing within ping_timeout
// is dropped and the backend gets 1001.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{PingInterval: 30 * time.Second, PingTimeout: 10 * time.Second}, true)
		start := time.Now()
		ping := r.client.next()
		if ping.op != wsframe.OpPing || time.Since(start) != 30*time.Second {
			t.Fatalf("got opcode %d after %v, want a ping after 30s", ping.op, time.Since(start))
		}
		r.client.send(wsframe.OpPong, ping.payload)
		// Its own ping, and the answer to the proxy's, pass as they are.
		r.client.send(wsframe.OpPing, []byte("mine"))
		if f := r.backend.next(); f.op != wsframe.OpPing || string(f.payload) != "mine" {
			t.Fatalf("backend got %d %q, want the client's own ping (the proxy's pong consumed)", f.op, f.payload)
		}
		start = time.Now()
		ping = r.client.next() // unanswered from here on
		if ping.op != wsframe.OpPing {
			t.Fatalf("got opcode %d, want a ping", ping.op)
		}
		f := r.backend.expectClose(CloseGoingAway)
		if string(f.payload[2:]) != "client unresponsive" || time.Since(start) != 40*time.Second {
			t.Fatalf("backend got %q after %v, want client unresponsive after 40s", f.payload[2:], time.Since(start))
		}
		r.backend.sendClose(CloseGoingAway, "")
		if e := r.end(); e.Reason != ClientUnresponsive {
			t.Fatalf("end %+v", e)
		}
	})
}

// TestProxyEnds guards the ends the proxy decides: idle_timeout and
// max_lifetime (1001 both ways), max_message_size (1009 both ways),
// a Shut (the server's drain), each answered by both peers.
func TestProxyEnds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		policy Policy
		act    func(r *rig)
		code   int
		reason Reason
	}{
		{"idle", Policy{IdleTimeout: time.Minute}, func(*rig) {}, CloseGoingAway, IdleTimeout},
		{"lifetime", Policy{MaxLifetime: 10 * time.Minute}, func(*rig) {}, CloseGoingAway, MaxLifetime},
		{"too big", Policy{MaxMessageSize: 10}, func(r *rig) { r.client.send(wsframe.OpText, []byte("eleven byte")) }, CloseTooBig, MessageTooBig},
		{"shut", Policy{}, func(r *rig) { r.tun.Shut(Shutdown, CloseGoingAway, CloseGoingAway, "server shutting down") }, CloseGoingAway, Shutdown},
		{"shut later", Policy{}, func(r *rig) {
			r.tun.ShutAfter(time.Minute, Shutdown, CloseServiceRestart, CloseServiceRestart, "server restarting")
		}, CloseServiceRestart, Shutdown},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, c.policy, true)
				c.act(r)
				r.client.expectClose(c.code)
				r.backend.expectClose(c.code)
				r.client.sendClose(c.code, "")
				r.backend.sendClose(c.code, "")
				r.client.expectEnd()
				r.backend.expectEnd()
				if e := r.end(); e.Reason != c.reason || e.CloseCode != c.code || e.ClosedBy != "proxy" {
					t.Fatalf("end %+v", e)
				}
			})
		})
	}
}

// TestMalformedLength guards a frame length with the top bit set (RFC
// 6455 §5.2): nothing of it passes, both peers get 1002, and the sender's
// connection is closed once its close frame is out.
func TestMalformedLength(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{}, true)
		bad := []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
		if _, err := r.client.c.Write(bad); err != nil {
			t.Fatal(err)
		}
		r.client.expectClose(CloseProtocol)
		r.client.expectEnd()
		r.backend.expectClose(CloseProtocol)
		r.backend.sendClose(CloseProtocol, "")
		if e := r.end(); e.Reason != ProtocolError {
			t.Fatalf("end %+v", e)
		}
	})
}

// TestSendTimeout guards a peer that stops reading: a write to it that
// makes no progress for send_timeout drops it, and the other side is told
// (1014 "backend not reading").
func TestSendTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{SendTimeout: 10 * time.Second}, false)
		start := time.Now()
		go r.client.send(wsframe.OpBinary, []byte("nobody reads this"))
		f := r.client.expectClose(CloseBadGateway)
		if string(f.payload[2:]) != "backend not reading" || time.Since(start) != 10*time.Second {
			t.Fatalf("client got %q after %v", f.payload[2:], time.Since(start))
		}
		r.client.sendClose(CloseBadGateway, "")
		if e := r.end(); e.Reason != BackendNotReading {
			t.Fatalf("end %+v", e)
		}
	})
}

// TestNoHalfClose guards a client connection that cannot half-close (an
// HTTP/2 stream; net.Pipe here): after the backend's close frame passes,
// the client's connection is closed once the client's own close frame has
// passed too, and at once if it had.
func TestNoHalfClose(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Policy{}, true)
		r.client.sendClose(1000, "")
		r.backend.expectClose(1000)
		r.backend.sendClose(1000, "")
		r.backend.c.Close()
		r.client.expectClose(1000)
		start := time.Now()
		r.client.expectEnd()
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("client's stream ended %v after both close frames, want at once", waited)
		}
		r.end()
	})
}

// TestPingIntoFullSocket guards dead-peer detection when the proxy's own
// ping cannot be written: a client that reads nothing (a pipe nobody
// reads is a full socket) makes the ping's write wait, with send_timeout
// an hour away. The ping timeout is armed before that write, so it still
// fires: the client is dropped and the backend gets 1001.
func TestPingIntoFullSocket(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		_, bPeer, backend, ended := rawClientTunnel(t, Policy{PingInterval: 20 * time.Second, PingTimeout: 20 * time.Second, SendTimeout: time.Hour}) // nobody reads the client's pipe
		start := time.Now()
		f := backend.expectClose(CloseGoingAway)
		if string(f.payload[2:]) != "client unresponsive" || time.Since(start) != 40*time.Second {
			t.Fatalf("backend got %q after %v, want client unresponsive after 40s", f.payload[2:], time.Since(start))
		}
		bPeer.Close()
		if e := <-ended; e.Reason != ClientUnresponsive {
			t.Fatalf("end %+v", e)
		}
	})
}

// TestJitter guards max_lifetime's jitter: within 10% either side, and not
// one value for every tunnel.
func TestJitter(t *testing.T) {
	t.Parallel()
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

// TestPingCountsFromItsWrite guards ping_timeout on a side whose output is
// inside a long frame: the ping waits for the frame's end (RFC 6455 §5.4),
// and the peer, reading steadily all along, is given ping_timeout from
// when the ping reaches it, not from when it was queued. With the default
// keepalive, a client taking a 5 MB message at 100 KB/s (50 s) was
// dropped as unresponsive at 40 s.
func TestPingCountsFromItsWrite(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cPeer, bPeer, backend, ended := rawClientTunnel(t, Policy{PingInterval: 30 * time.Second, PingTimeout: 10 * time.Second, SendTimeout: time.Minute})
		const size = 5 << 20
		go bPeer.Write(wsframe.AppendFrame(nil, wsframe.OpBinary, make([]byte, size), nil))

		// The client reads the message's bytes 10 KiB every 100 ms, and
		// sends nothing.
		var scratch [wsframe.MaxHeaderLen]byte
		h, err := wsframe.ReadHeader(cPeer, scratch[:])
		if err != nil || h.Length != size {
			t.Fatalf("header %+v, %v", h, err)
		}
		buf := make([]byte, 10<<10)
		start := time.Now()
		for got := 0; got < size; {
			time.Sleep(100 * time.Millisecond)
			n, err := cPeer.Read(buf[:min(len(buf), size-got)])
			if err != nil {
				t.Fatalf("client dropped after %v with %d of %d bytes read: %v", time.Since(start), got, size, err)
			}
			got += n
		}
		client := newPeer(t, cPeer, true, true)
		ping := client.next()
		if ping.op != wsframe.OpPing {
			t.Fatalf("after the message: opcode %d, want the ping queued behind it", ping.op)
		}
		client.send(wsframe.OpPong, ping.payload)
		client.send(wsframe.OpText, []byte("still here"))
		if f := backend.next(); f.op != wsframe.OpText || string(f.payload) != "still here" {
			t.Fatalf("backend got %d %q", f.op, f.payload)
		}
		select {
		case e := <-ended:
			t.Fatalf("tunnel ended: %+v", e)
		default:
		}
	})
}

// TestBusyCheckLosesNoFrame guards the rule that the proxy's queued frames
// are written by whoever holds a side's write lock when it lets go: the
// keepalive's check of whether the other side is being written to once
// took that lock and let go without writing, so a ping or close frame
// queued at that moment stayed queued (a healthy peer then dropped as
// unresponsive, or cut off without a close frame).
func TestBusyCheckLosesNoFrame(t *testing.T) {
	t.Parallel()
	r := newRig(t, Policy{}, true)
	s := r.tun.backend
	for i := range 2000 {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { // the client's keeper, checking again and again
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					s.busy()
				}
			}
		}()
		s.send(s.ping(), false) // the backend's keeper, or a Shut's close frame
		close(stop)
		<-done
		select {
		case f := <-r.backend.frames:
			if f.op != wsframe.OpPing {
				t.Fatalf("backend got opcode %d, want a ping", f.op)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the queued ping was never written", i)
		}
	}
}
