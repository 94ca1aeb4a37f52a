// Package echo is the demo WebSocket backend: it echoes every message back
// with the same type, and serves a page that runs the seeds' browser test
// (connect, send "tom", show the reply). `wssproxy -demo` runs it in-process;
// examples/echo runs it on its own; tests use it as a real backend.
package echo

import (
	"context"
	_ "embed"
	"errors"
	"net/http"

	"github.com/coder/websocket"
)

//go:embed index.html
var page []byte

// Options configure Handler. The zero value echoes with no subprotocol, no
// compression and a 64 MiB message limit.
type Options struct {
	// Subprotocols the backend accepts, in its order of preference.
	Subprotocols []string
	// Compression enables permessage-deflate when the client offers it.
	Compression bool
	// ReadLimit caps a message; 0 means 64 MiB.
	ReadLimit int64
}

// Handler echoes WebSocket messages and serves the demo page for plain GETs.
func Handler(opts Options) http.Handler {
	limit := opts.ReadLimit
	if limit == 0 {
		limit = 64 << 20
	}
	mode := websocket.CompressionDisabled
	if opts.Compression {
		mode = websocket.CompressionContextTakeover
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols:       opts.Subprotocols,
			CompressionMode:    mode,
			InsecureSkipVerify: true, // a demo and test backend: any Origin may connect
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(limit)
		Serve(r.Context(), c)
	})
}

// Serve echoes messages on c until the peer closes or ctx ends, then
// completes the close handshake.
func Serve(ctx context.Context, c *websocket.Conn) {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if errors.As(err, new(websocket.CloseError)) {
				c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
