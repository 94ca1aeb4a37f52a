package proxy

// How a tunnel ends: the proxy's close, dead peers, the end reason, timers,
// the log line.

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"
)

// shut ends the tunnel from the proxy's side: a close frame with
// toClient's and toBackend's code to each peer (0: just drop that
// connection), then closeGrace for the answers.
func (t *tunnel) shut(reason string, toClient, toBackend int, text string) {
	t.mu.Lock()
	if t.shuttin || t.closed {
		t.mu.Unlock()
		return
	}
	t.shuttin = true
	if t.reason == "" {
		t.reason = reason
	}
	t.mu.Unlock()
	t.noteClose(max(toClient, toBackend), "proxy")
	t.after(closeGrace, t.close) // armed before any write that may wait
	for _, x := range []struct {
		s    *side
		code int
	}{{t.client, toClient}, {t.backend, toBackend}} {
		if x.code == 0 {
			x.s.proxyClosed.Store(true)
			x.s.drop()
			continue
		}
		x.s.send(closeFrame(x.code, text, x.s.mask), true)
	}
}

// deadPeer ends the tunnel for a side found dead (why says how): it is
// dropped, and the other side gets a close frame: 1014 to the client when
// the backend died, 1001 to the backend when the client did.
func (t *tunnel) deadPeer(s *side, why string) {
	toClient, toBackend := 0, closeGoingAway
	if s == t.backend {
		toClient, toBackend = closeBadGateway, 0
	}
	t.setReason(why)
	t.shut(why, toClient, toBackend, why)
	// Already shutting (its close frame is what could not be written):
	// drop it all the same.
	s.proxyClosed.Store(true)
	s.drop()
}

func (t *tunnel) setReason(r string) {
	t.mu.Lock()
	if t.reason == "" {
		t.reason = r
	}
	t.mu.Unlock()
}

// after runs f after d unless the tunnel has ended.
func (t *tunnel) after(d time.Duration, f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.timers = append(t.timers, time.AfterFunc(d, f))
	}
}

func (t *tunnel) stopTimers() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tm := range t.timers {
		tm.Stop()
	}
	t.timers = nil
}

// close drops both connections.
func (t *tunnel) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	t.client.closeConn()
	t.backend.closeConn()
}

// logEnd writes the tunnel's access log line: who, where, how long, how
// much, and how it ended (the first close frame's code and sender; 1006
// when nobody sent one).
func (t *tunnel) logEnd(in, out direction) {
	t.mu.Lock()
	reason := t.reason
	t.mu.Unlock()
	level, endedBy, detail := slog.LevelInfo, "", ""
	switch {
	case reason != "":
		endedBy, detail = "proxy", reason
		if strings.HasPrefix(reason, "backend ") {
			level = slog.LevelWarn
		}
	case out.err != nil && !isClosed(out.err):
		endedBy, detail = "backend", out.err.Error()
		level = slog.LevelWarn
	case in.err != nil && !isClosed(in.err):
		endedBy, detail = "client", in.err.Error()
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !t.log.Enabled(ctx, level) {
		return // at log_level warn, most tunnels: no attributes built
	}
	code, by := 1006, "none" // RFC 6455 §7.1.5: closed without a close frame
	if c := t.firstClose.Load(); c != nil {
		code, by = c.code, c.by
	}
	attrs := []any{
		"client_ip", t.clientIP, "host", t.host, "path", t.path, "route", t.rt.name, "backend", t.up.name,
		"status", t.status, "handshake_ms", float64(t.handshake.Microseconds()) / 1000,
		"duration", time.Since(t.start).Round(time.Millisecond),
		"bytes_in", in.n, "bytes_out", out.n, "close_code", code, "closed_by", by, "proto", t.proto,
	}
	switch endedBy {
	case "proxy":
		attrs = append(attrs, "ended_by", endedBy, "reason", detail)
	case "backend", "client":
		attrs = append(attrs, "ended_by", endedBy, "error", detail)
	}
	t.log.Log(ctx, level, "tunnel closed", attrs...)
}

// closeWrite half-closes c: for TLS a close_notify alert, then the TCP FIN
// (tls.Conn.CloseWrite sends only the alert). It returns the error of the
// last step; errors.ErrUnsupported for a connection that cannot half-close.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite()
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// isClosed reports errors that only mean the tunnel closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
