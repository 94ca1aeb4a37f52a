package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// A close handshake over HTTP/2 ends as promptly as over HTTP/1.1: case by
// case, a client over each sends the same frames and half-closes (FIN, or
// END_STREAM) the same way, and must see the same frames and then the end
// of its connection or stream. The close grace is a minute, longer than
// the test's deadline: an end that waits it out fails the test, whatever
// the machine's speed.

// promptCase is one close handshake.
type promptCase struct {
	name string
	// path picks the backend's part: "/backend-first" sends its close
	// frame and its FIN at once, then reads to the end; "/client-first"
	// answers the client's close frame with its own, then its FIN.
	path string
	// answer: the client sends its close frame (after reading the
	// backend's on /backend-first, at once on /client-first).
	answer bool
	// halfClose: the client then ends its half (TLS close_notify and FIN,
	// or END_STREAM), as a socket does when it closes; without it the
	// client only waits, as a browser does over HTTP/2.
	halfClose bool
}

// promptClient is one client connection for a case: a TLS connection over
// HTTP/1.1 or a stream of an HTTP/2 connection, after the handshake.
type promptClient interface {
	io.ReadWriteCloser
	closeWrite() error
}

// h1Prompt opens a WebSocket on path over HTTP/1.1; reads and writes end
// with ctx.
func h1Prompt(t *testing.T, ctx context.Context, e *env, path string) promptClient {
	cfg := e.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: prompt\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake over HTTP/1.1: %v %v", resp, err)
	}
	return &h1PromptConn{conn, br}
}

type h1PromptConn struct {
	*tls.Conn
	br *bufio.Reader
}

func (c *h1PromptConn) Read(p []byte) (int, error) { return c.br.Read(p) }
func (c *h1PromptConn) closeWrite() error          { return c.CloseWrite() }

// h2Prompt opens a WebSocket on path as a stream of a new HTTP/2
// connection; the connection is closed when ctx ends, which ends a read.
func h2Prompt(t *testing.T, ctx context.Context, e *env, path string) promptClient {
	h := e.h2(t)
	stop := context.AfterFunc(ctx, func() { h.conn.Close() })
	t.Cleanup(func() { stop() })
	st, head, err := h.open(ctx, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", path,
		":authority", "prompt", "sec-websocket-version", "13")
	if err != nil || head.status != "200" {
		t.Fatalf("extended CONNECT: %v %v", head, err)
	}
	return h2PromptStream{st}
}

type h2PromptStream struct{ *h2ClientStream }

func (s h2PromptStream) closeWrite() error { s.h2ClientStream.closeWrite(); return nil }

// promptBackend is the raw backend of the cases; it reports what each
// connection got from the proxy after its handshake, to its end.
func promptBackend(t *testing.T) (string, chan []byte) {
	got := make(chan []byte, 16) // never blocks a handler: a failed case reads nothing
	addr := rawBackend(t, func(conn net.Conn) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		writeAccept(conn, req)
		bye := frame(true, 0, 0x8, []byte{3, 232, 'b', 'y', 'e'}, true)
		var in []byte
		if req.URL.Path == "/client-first" {
			b0, payload, err := readClientFrame(br)
			if err != nil || b0&0x0f != 0x8 {
				got <- []byte(fmt.Sprintf("no close frame: %v", err))
				return
			}
			in = frame(true, 0, 0x8, payload, false) // as sent, with the test's mask
			conn.Write(frame(true, 0, 0x8, payload, true))
		} else {
			conn.Write(bye)
		}
		conn.(*net.TCPConn).CloseWrite()
		rest, _ := io.ReadAll(br)
		got <- append(in, rest...)
	})
	return addr, got
}

// TestClosePromptOverH2 guards that the end of a close handshake reaches
// an HTTP/2 client as it reaches an HTTP/1.1 client: when the backend has
// sent its close frame and its FIN, the client's stream ends as soon as the
// client has answered (or at once, if it had sent its close before), and
// when the client closes first, its stream ends once the backend's answer
// and FIN have passed; in every case the frames are the same both ways.
func TestClosePromptOverH2(t *testing.T) {
	t.Parallel()
	backend, got := promptBackend(t)
	e := startProxy(t, route("/", "ws://"+backend), func(s *proxy.Server) { proxy.SetCloseGrace(s, time.Minute) })
	bye := frame(true, 0, 0x8, []byte{3, 232, 'b', 'y', 'e'}, true)
	cases := []promptCase{
		{name: "backend first, client answers", path: "/backend-first", answer: true},
		{name: "backend first, client answers and ends its half", path: "/backend-first", answer: true, halfClose: true},
		{name: "client first", path: "/client-first", answer: true},
		{name: "client first and ends its half", path: "/client-first", answer: true, halfClose: true},
	}
	for _, c := range cases {
		for _, over := range []struct {
			proto string
			open  func(*testing.T, context.Context, *env, string) promptClient
		}{{"HTTP/1.1", h1Prompt}, {"HTTP/2", h2Prompt}} {
			t.Run(c.name+" over "+over.proto, func(t *testing.T) {
				ctx := testutil.Context(t, 20*time.Second)
				cl := over.open(t, ctx, e, c.path)
				var want []byte // what the client must get, then the end
				if c.path == "/backend-first" {
					want = bye
					readExactly(t, cl, bye)
				}
				if c.answer {
					if _, err := cl.Write(normalClose); err != nil {
						t.Fatalf("client's close: %v", err)
					}
				}
				if c.halfClose {
					cl.closeWrite()
				}
				if c.path == "/client-first" {
					want = frame(true, 0, 0x8, []byte{3, 232}, true) // the backend's echo
				}
				rest, err := io.ReadAll(cl)
				switch {
				case ctx.Err() != nil:
					t.Fatalf("the client's %s did not end (got %q, %v): it waits out the close grace", over.proto, rest, err)
				case err != nil:
					t.Errorf("the client's %s ended with %v, want a clean end", over.proto, err)
				}
				cl.Close() // as a client does once it has seen the end
				if c.path == "/backend-first" {
					want = nil // read above
				}
				if !bytes.Equal(rest, want) {
					t.Errorf("client got %q before the end, want %q", rest, want)
				}
				select {
				case b := <-got:
					if !bytes.Equal(b, normalClose) {
						t.Errorf("backend got %q, want the client's close frame %q", b, normalClose)
					}
				case <-ctx.Done():
					t.Fatal("the backend's connection did not end")
				}
			})
		}
	}
	waitTunnels(t, testutil.Context(t, 20*time.Second), e, 0)
}

// readExactly reads len(want) bytes from r and fails unless they are want.
func readExactly(t *testing.T, r io.Reader, want []byte) {
	t.Helper()
	b := make([]byte, len(want))
	if _, err := io.ReadFull(r, b); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("client got %q (%v), want %q", b, err, want)
	}
}

// writeAccept answers req, a WebSocket handshake, with a 101.
func writeAccept(conn net.Conn, req *http.Request) {
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
}
