package proxy

// HTTP/2 connections as a whole: the stream limit (h2_max_streams), and
// the streams Go's HTTP/2 server refuses itself, before any handler runs.

import (
	"net/http"
	"strings"
)

// HTTP/2 flow control for tunnels. Go's server returns connection-level
// receive window only as a handler reads the body, so the data a stuck
// stream holds (its backend not reading) counts against the whole
// connection: with Go's defaults (1 MiB per stream, 1 MiB per connection)
// one stuck WebSocket stops every upload on the connection. Here a
// connection's window is a hundred streams' worth: fewer than a hundred
// stuck streams cannot take what the others need, and what one
// connection can make the proxy hold is h2ConnWindow whatever
// h2_max_streams is. Go's server takes buffers as DATA comes (pooled
// chunks of 1 to 16 KiB, net/http/internal/http2's databuffer.go), not a
// window's worth per stream, so an open stream that sends nothing holds
// none.
const (
	h2StreamWindow = 256 << 10            // receive window per stream
	h2ConnWindow   = 100 * h2StreamWindow // per connection, whatever its streams (25 MiB)
)

// h2Config is the HTTP/2 server's configuration for cfg.
func (s *Server) h2Config(cfg *Config) *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          cfg.H2MaxStreams,
		MaxReceiveBufferPerStream:     h2StreamWindow,
		MaxReceiveBufferPerConnection: h2ConnWindow,
		// A connection that takes no byte for this long is closed: a
		// stream's send_timeout resets the stream, which cannot help
		// when the connection itself is full. Twice the longest
		// send_timeout, so that a stream's own timer, which names its
		// peer as not reading, comes first even on a loaded machine
		// (a quarter longer was overtaken, and the tunnel's end read
		// "client went away").
		WriteByteTimeout: maxSendTimeout(cfg) * 2,
		CountError:       s.h2Refused,
	}
}

// h2Enter counts r's stream on its HTTP/2 connection while its handler
// runs (the caller calls h2Leave on the connection it returns, nil for
// none). The first time a connection has h2_max_streams streams open, it
// says so at warn, once for the connection: a browser then queues every
// further WebSocket and page request of the site on its side, without an
// error, until a stream ends.
func (s *Server) h2Enter(r *http.Request) *clientConn {
	c, _ := r.Context().Value(connKey{}).(*clientConn)
	if c == nil {
		return nil
	}
	if n := c.h2Streams.Add(1); int(n) >= s.h2MaxStreams && !c.h2Full.Swap(true) {
		s.log.Warn("HTTP/2 connection at h2_max_streams: the client queues further streams (browsers: WebSockets and page requests alike) until one ends",
			"client_ip", clientIP(s.state.Load().withClient(r)), "h2_max_streams", s.h2MaxStreams)
		if m := s.metrics.Load(); m != nil {
			m.h2Full.Inc()
		}
	}
	return c
}

func (c *clientConn) h2Leave() { c.h2Streams.Add(-1) }

// h2Refusal is a kind of stream Go's HTTP/2 server refuses itself.
type h2Refusal struct {
	kind, reason string
}

var (
	h2OverLimit = h2Refusal{"h2-max-streams", "streams over h2_max_streams (a client that ignores SETTINGS_MAX_CONCURRENT_STREAMS)"}
	h2XConnOff  = h2Refusal{"h2-extended-connect-off", "extended CONNECT (:protocol) while http2_websockets = false, or a malformed CONNECT"}
	h2BadConn   = h2Refusal{"h2-malformed", "malformed CONNECT: :path or :scheme without :protocol, or no :authority (RFC 9113 §8.5)"}
	h2BadPath   = h2Refusal{"h2-malformed", "malformed request: missing or bad :method, :scheme or :path (RFC 9113 §8.3.1)"}
)

// h2Refusals makes the rate-limited log lines of Go's own refusals.
func (s *Server) h2Refusals() map[h2Refusal]*rateLog {
	logs := map[h2Refusal]*rateLog{}
	for _, k := range []h2Refusal{h2OverLimit, h2XConnOff, h2BadConn, h2BadPath} {
		logs[k] = &rateLog{emit: func(n int) {
			s.log.Info("request refused", "refused", k.kind, "reason", k.reason, "streams", n,
				"answer", "RST_STREAM from Go's HTTP/2 server, before any handler (no client address)")
		}}
		s.rateLogs = append(s.rateLogs, logs[k])
	}
	return logs
}

// h2Refused is Go's HTTP/2 server's CountError: errType names an error it
// answered itself, before any handler ran, as scope_CODE_cause
// ("stream_PROTOCOL_bad_path"). Go does not say which connection it was
// on, so the lines have no client address. Streams over h2_max_streams and
// malformed requests are the client's doing: counted, and logged at info
// as refusals are, one line a second for each kind with how many, as a
// client can send them by the thousand. The rest (frame and flow-control
// errors, most of which end the connection) is logged at debug.
func (s *Server) h2Refused(errType string) {
	var k h2Refusal
	switch {
	case strings.HasSuffix(errType, "_over_max_streams"), strings.HasSuffix(errType, "_over_max_streams_race"):
		k = h2OverLimit
		if m := s.metrics.Load(); m != nil {
			m.h2Refused.Inc()
		}
	case strings.HasSuffix(errType, "_bad_connect") && !extendedConnect:
		k = h2XConnOff
	case strings.HasSuffix(errType, "_bad_connect"):
		k = h2BadConn
	case strings.HasSuffix(errType, "_bad_path"), strings.HasSuffix(errType, "_bad_path_method"):
		k = h2BadPath
	default:
		s.log.Debug("HTTP/2 error", "error", errType)
		return
	}
	if m := s.metrics.Load(); m != nil {
		m.refused.WithLabelValues(k.kind).Inc()
	}
	s.h2Logs[k].add()
}
