package sockio

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kind is one way of making a side: the side, and the peer that talks to
// it.
type kind struct {
	name string
	io   string // what Conn.IO must say
	make func(t *testing.T, e *Engine) (side Conn, peer net.Conn)
}

// kinds are the sides the engine serves: portable over anything, and on
// Linux raw over TCP, unix sockets and TLS over an Underlay.
func kinds() []kind {
	ks := []kind{
		{"portable/pipe", IOPortable, func(t *testing.T, e *Engine) (Conn, net.Conn) {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			return e.Conn(a), b
		}},
		{"portable/tls-to-backend", IOPortable, func(t *testing.T, e *Engine) (Conn, net.Conn) {
			// A TLS server connection over a socket the engine may not
			// hook: the portable engine serves it.
			s, c := tlsPair(t, func(c net.Conn) net.Conn { return c })
			return e.Conn(s), c
		}},
	}
	if runtime.GOOS != "linux" {
		return ks
	}
	return append(ks,
		kind{"raw/tcp", IORaw, func(t *testing.T, e *Engine) (Conn, net.Conn) {
			a, b := tcpPair(t)
			return e.Conn(a), b
		}},
		kind{"raw/unix", IORaw, func(t *testing.T, e *Engine) (Conn, net.Conn) {
			a, b := unixPair(t)
			return e.Conn(a), b
		}},
		kind{"raw/tls", IORaw, func(t *testing.T, e *Engine) (Conn, net.Conn) {
			s, c := tlsPair(t, func(c net.Conn) net.Conn { return &hookConn{Conn: c} })
			return e.Conn(s), c
		}},
	)
}

// newEngine is an Engine for one test, closed when it ends.
func newEngine(t testing.TB, o Options) *Engine {
	e := New(o)
	t.Cleanup(func() {
		if st := e.Stats(); st != (Stats{}) {
			t.Errorf("engine still holds %+v after the test", st)
		}
		e.Close()
	})
	return e
}

// pumped is what one Pump delivered: the bytes in order, then the end.
type pumped struct {
	mu    sync.Mutex
	data  bytes.Buffer
	ended chan struct{}
	ferr  error
	rerr  error
}

func pump(c Conn, feed func([]byte) error) *pumped {
	p := &pumped{ended: make(chan struct{})}
	go c.Pump(func(b []byte) error {
		p.mu.Lock()
		p.data.Write(b)
		p.mu.Unlock()
		if feed != nil {
			return feed(b)
		}
		return nil
	}, func(ferr, rerr error) {
		p.ferr, p.rerr = ferr, rerr
		close(p.ended)
	})
	return p
}

func (p *pumped) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-p.ended:
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("the pump never ended (%d bytes read)", p.data.Len())
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPumpDeliversInOrder guards a side's reads: every byte in order,
// in chunks small and over the 64 KiB buffer, then the end of the stream
// as io.EOF.
func TestPumpDeliversInOrder(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newEngine(t, Options{})
			side, peer := k.make(t, e)
			if side.IO() != k.io {
				t.Fatalf("IO() = %q, want %q", side.IO(), k.io)
			}
			p := pump(side, nil)
			var want bytes.Buffer
			for i, size := range []int{1, 255, 256, 257, 4096, 200 << 10, 3} {
				chunk := bytes.Repeat([]byte{byte('a' + i)}, size)
				want.Write(chunk)
				if _, err := peer.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			if closeWrite(peer) != nil {
				peer.Close() // a pipe: the end is the close
			}
			p.wait(t, ctx)
			if p.ferr != nil || p.rerr != io.EOF {
				t.Errorf("ended with %v, %v; want nil, io.EOF", p.ferr, p.rerr)
			}
			if !bytes.Equal(p.data.Bytes(), want.Bytes()) {
				t.Errorf("got %d bytes, want %d, in order", p.data.Len(), want.Len())
			}
			side.Close()
		})
	}
}

// TestEndRightAfterData guards the end of a stream that arrives together
// with its last data (the raw engine's skipped read must not hide it):
// the data is delivered and the end follows, each time. In even rounds
// both are there, and the poller has seen the end, before a raw pump
// starts: its first read takes the data, and only the end's own event
// (TestEpollReportsEndThatCameWithData) tells it that more is to read.
// In odd rounds they arrive while it waits.
func TestEndRightAfterData(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newEngine(t, Options{})
			for round := range 20 {
				side, peer := k.make(t, e)
				var p *pumped
				if round%2 == 1 {
					p = pump(side, nil)
				}
				if k.io == IOPortable && round%2 == 0 {
					p = pump(side, nil) // net.Pipe's writes wait for the reader
				}
				peer.Write([]byte("last words"))
				hangUp(peer)
				if p == nil {
					waitEndSeen(t, ctx, side)
					p = pump(side, nil)
				}
				p.wait(t, ctx)
				if got := p.data.String(); got != "last words" || p.rerr == nil {
					t.Fatalf("round %d: got %q then %v, want the last words then the end", round, got, p.rerr)
				}
				side.Close()
			}
		})
	}
}

// hangUp ends a peer's stream without ceremony: no close_notify, just the
// FIN (for net.Pipe, the close).
func hangUp(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.Close()
}

// TestCloseEndsPump guards Close: from the pump's own feed, and from
// another goroutine while the pump waits, it ends the pump with
// net.ErrClosed and the peer sees the end.
func TestCloseEndsPump(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newEngine(t, Options{})

			side, peer := k.make(t, e)
			p := pump(side, func([]byte) error { side.Close(); return nil })
			peer.Write([]byte("close me"))
			p.wait(t, ctx)
			if !errors.Is(p.rerr, net.ErrClosed) {
				t.Errorf("closed from feed: ended with %v, want net.ErrClosed", p.rerr)
			}
			peerSeesEnd(t, peer)

			side, peer = k.make(t, e)
			p = pump(side, nil)
			peer.Write([]byte("then wait"))
			waitData(t, ctx, p, "then wait")
			side.Close()
			p.wait(t, ctx)
			if !errors.Is(p.rerr, net.ErrClosed) {
				t.Errorf("closed while waiting: ended with %v, want net.ErrClosed", p.rerr)
			}
			peerSeesEnd(t, peer)
		})
	}
}

func waitData(t *testing.T, ctx context.Context, p *pumped, want string) {
	t.Helper()
	for {
		p.mu.Lock()
		got := p.data.String()
		p.mu.Unlock()
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("got %q, want %q", got, want)
		case <-time.After(time.Millisecond):
		}
	}
}

func peerSeesEnd(t *testing.T, peer net.Conn) {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, err := peer.Read(make([]byte, 64))
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		t.Fatalf("peer read %v, want the end", err)
	}
}

// TestWriteAndCloseWrite guards a side's writes and its half-close: the
// peer reads what was written, then the end; a connection that cannot
// half-close says errors.ErrUnsupported.
func TestWriteAndCloseWrite(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, Options{})
			side, peer := k.make(t, e)
			msg := bytes.Repeat([]byte("w"), 100<<10)
			got := make(chan []byte, 1)
			go func() {
				peer.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			if n, err := side.Write(msg); n != len(msg) || err != nil {
				t.Fatalf("Write: %d, %v", n, err)
			}
			err := side.CloseWrite()
			if k.name == "portable/pipe" {
				if !errors.Is(err, errors.ErrUnsupported) {
					t.Fatalf("CloseWrite on a pipe: %v, want errors.ErrUnsupported", err)
				}
				side.Close()
			} else if err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			if b := <-got; !bytes.Equal(b, msg) {
				t.Fatalf("peer read %d bytes, want %d", len(b), len(msg))
			}
			side.Close()
		})
	}
}

// TestWriteDeadline guards send_timeout's means: a write to a peer that
// reads nothing fails with os.ErrDeadlineExceeded once its deadline
// passes.
func TestWriteDeadline(t *testing.T) {
	t.Parallel()
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, Options{})
			side, _ := k.make(t, e)
			side.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			junk := make([]byte, 1<<20)
			var err error
			for range 1000 {
				if _, err = side.Write(junk); err != nil {
					break
				}
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write to a peer that reads nothing: %v, want the deadline", err)
			}
			side.Close()
		})
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestRawFromEnv guards the switch's spelling: WSSPROXY_RAWIO=0 (false,
// off, no) turns the raw engine off; unset, 1 and the like leave it on;
// anything else leaves it on and is reported as unknown.
func TestRawFromEnv(t *testing.T) {
	for _, c := range []struct {
		value   string
		raw, ok bool
	}{
		{"", true, true}, {"1", true, true}, {"on", true, true},
		{"0", false, true}, {"false", false, true}, {" OFF ", false, true}, {"no", false, true},
		{"maybe", true, false},
	} {
		t.Setenv("WSSPROXY_RAWIO", c.value)
		if raw, ok := RawFromEnv(); raw != c.raw || ok != c.ok {
			t.Errorf("WSSPROXY_RAWIO=%q: raw %v ok %v, want %v %v", c.value, raw, ok, c.raw, c.ok)
		}
	}
}
