package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tunnel is one upgraded WebSocket connection: the client's side, hijacked
// from the http.Server, and the backend's. It is byte-transparent: frames
// pass as they are, so subprotocols, extensions and close codes are the
// peers' business.
type tunnel struct {
	rt       *route
	client   net.Conn // *tls.Conn from the listener
	backend  net.Conn
	clientIP string
	start    time.Time

	// Bytes read ahead before the hijack (client) and after the backend's
	// 101 (backend); forwarded before anything else.
	fromClient, fromBackend []byte

	closeOnce sync.Once
}

// copyBufSize matches the largest TLS record's plaintext (16 KiB), so one
// read from the client's side never needs more.
const copyBufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// direction is how one side of the tunnel ended.
type direction struct {
	n   int64
	err error // nil for a clean end of stream
}

// run tunnels until both directions have ended, then closes both
// connections and logs one line. ctx is the server's: cancelling it closes
// both connections, which ends both directions.
//
// A direction that ends cleanly (EOF, or TLS close_notify) half-closes its
// destination and leaves the other direction flowing; one that fails closes
// both connections, so the other ends too. run returns only when both have.
func (t *tunnel) run(ctx context.Context, log *slog.Logger) {
	stop := context.AfterFunc(ctx, t.close)
	defer stop()

	toBackend := make(chan direction, 1)
	go func() { toBackend <- t.copyToBackend() }()
	out := t.copyFromBackend()
	in := <-toBackend
	t.close()

	attrs := []any{
		"route", t.rt.name, "backend", t.rt.backendString(), "client_ip", t.clientIP,
		"duration", time.Since(t.start).Round(time.Millisecond),
		"bytes_in", in.n, "bytes_out", out.n,
	}
	level := slog.LevelInfo
	switch {
	case ctx.Err() != nil:
		attrs = append(attrs, "ended_by", "shutdown")
	case out.err != nil && !isClosed(out.err):
		attrs = append(attrs, "ended_by", "backend", "error", out.err.Error())
		level = slog.LevelWarn
	case in.err != nil && !isClosed(in.err):
		attrs = append(attrs, "ended_by", "client", "error", in.err.Error())
		level = slog.LevelDebug
	}
	log.Log(context.Background(), level, "tunnel closed", attrs...)
}

// copyToBackend forwards the client's bytes; at the client's end of stream
// it half-closes the backend so the backend can still answer.
func (t *tunnel) copyToBackend() direction {
	n, err := pipe(t.backend, t.client, t.fromClient)
	t.fromClient = nil
	t.finish(t.backend, err)
	return direction{n, err}
}

// copyFromBackend forwards the backend's bytes; at the backend's end of
// stream it half-closes the client (TLS close_notify, then TCP FIN).
func (t *tunnel) copyFromBackend() direction {
	n, err := pipe(t.client, t.backend, t.fromBackend)
	t.fromBackend = nil
	t.finish(t.client, err)
	return direction{n, err}
}

func (t *tunnel) finish(dst net.Conn, err error) {
	if err != nil {
		t.close()
		return
	}
	closeWrite(dst)
}

func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		t.client.Close()
		t.backend.Close()
	})
}

// pipe writes pending, then copies src to dst until src ends. It returns
// the bytes written and nil at a clean end of src.
func pipe(dst, src net.Conn, pending []byte) (int64, error) {
	var n int64
	if len(pending) > 0 {
		w, err := dst.Write(pending)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		r, rerr := src.Read(buf)
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// closeWrite half-closes c: for TLS a close_notify alert, then the TCP FIN
// (tls.Conn.CloseWrite sends only the alert).
func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite()
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// isClosed reports errors that only mean the other direction closed the
// connection first.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
