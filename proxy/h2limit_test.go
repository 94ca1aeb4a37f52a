package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// value is the value of the unlabelled counter called name (0 if none).
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestH2StreamLimit guards h2_max_streams: it is what SETTINGS advertise
// (default 1,000, with the connection's receive window the same 25 MiB
// whatever the limit); a connection that reaches it is logged at warn
// once, however often it reaches it again, and each connection once; a
// stream a client opens over it anyway is refused (RST_STREAM), counted in
// wssproxy_h2_streams_refused_total and logged; a stream that ends makes
// room for the next.
func TestH2StreamLimit(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	backend := echoBackend(t, echo.Options{})

	def := startProxy(t, route("/wss", backend))
	h := def.h2Raw(t, ctx)
	if got := h.settings[http2.SettingMaxConcurrentStreams]; got != proxy.DefaultH2MaxStreams || got < 1000 {
		t.Errorf("default SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d (at least 1000)", got, proxy.DefaultH2MaxStreams)
	}

	cfg := route("/wss", backend)
	cfg.H2MaxStreams = 3
	reg := prometheus.NewRegistry()
	e := startProxy(t, cfg, func(s *proxy.Server) {
		if err := s.RegisterMetrics(reg); err != nil {
			t.Fatal(err)
		}
	})
	const full = "HTTP/2 connection at h2_max_streams"
	raw := e.h2Raw(t, ctx)
	if got := raw.settings[http2.SettingMaxConcurrentStreams]; got != 3 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 3", got)
	}
	open := func(id uint32) string {
		t.Helper()
		raw.connect(id, "/wss")
		r := raw.response(id)
		if r.reset != 0 {
			return "reset " + r.reset.String()
		}
		return r.status
	}
	for _, id := range []uint32{1, 3, 5} {
		if got := open(id); got != "200" {
			t.Fatalf("stream %d: %s, want 200", id, got)
		}
	}
	e.logs.Wait(t, ctx, full+`.* h2_max_streams=(3)`)
	// A client that ignores the setting: Go's server refuses the stream.
	if got := open(7); !strings.HasPrefix(got, "reset ") {
		t.Fatalf("stream 7, over the limit: %s, want it reset", got)
	}
	e.logs.Wait(t, ctx, `msg="request refused" refused=h2-max-streams .*streams=(1) `)
	if got := value(t, reg, "wssproxy_h2_streams_refused_total"); got != 1 {
		t.Errorf("wssproxy_h2_streams_refused_total %v, want 1", got)
	}
	// One ends: room for the next, and the connection full again is not
	// logged again.
	raw.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	waitFor(t, ctx, "the reset stream's tunnel to end", func() bool { return e.srv.OpenTunnels() == 2 })
	if got := open(9); got != "200" {
		t.Fatalf("stream 9, after one ended: %s, want 200", got)
	}
	// Another connection at the limit: a line of its own.
	other := e.h2Raw(t, ctx)
	for id := uint32(1); id <= 5; id += 2 {
		other.connect(id, "/wss")
		if r := other.response(id); r.status != "200" {
			t.Fatalf("second connection, stream %d: %v", id, r)
		}
	}
	waitFor(t, ctx, "the second connection's line", func() bool { return len(e.logs.Lines(full)) >= 2 })
	if lines := e.logs.Lines(full); len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") {
		t.Errorf("want one warn line per connection at the limit, got:\n%s", strings.Join(lines, "\n"))
	}
	if got := value(t, reg, "wssproxy_h2_connections_at_stream_limit_total"); got != 2 {
		t.Errorf("wssproxy_h2_connections_at_stream_limit_total %v, want 2", got)
	}
}

// TestH2Malformed guards that a malformed WebSocket handshake over HTTP/2
// is answered as one over HTTP/1.1, case by case: 400 with the reason,
// logged at info as the client's fault (refused=bad-handshake), counted,
// and the backend never dialed (so never counted against it). Where Go's
// HTTP/2 server refuses the stream itself before any handler runs (no
// :path), the client gets its RST_STREAM PROTOCOL_ERROR (RFC 9113 §8.1.1),
// and the refusal is still logged and counted, without the client's
// address, which Go does not pass on.
func TestH2Malformed(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	var dials atomic.Int32
	backend := rawBackend(t, func(c net.Conn) { dials.Add(1); c.Close() })
	reg := prometheus.NewRegistry()
	e := startProxy(t, route("/wss", "ws://"+backend), func(s *proxy.Server) {
		if err := s.RegisterMetrics(reg); err != nil {
			t.Fatal(err)
		}
	})
	h1 := func(head string) (string, string) {
		cfg := e.tls.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		conn, err := tls.Dial("tcp", e.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s\r\nHost: malformed\r\n\r\n", head)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("HTTP/1.1: %v", err)
		}
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode), resp.Header.Get("X-Wssproxy-Error")
	}
	h := e.h2Raw(t, ctx)
	id := uint32(1)
	h2 := func(fields ...string) (string, string) {
		h.headers(id, fields...)
		r := h.response(id)
		id += 2
		if r.reset != 0 {
			return "reset " + r.reset.String(), ""
		}
		return r.status, r.header.Get("X-Wssproxy-Error")
	}
	for _, tc := range []struct {
		name       string
		h1, h2     func() (string, string)
		want, kind string
		h2Want     string // where HTTP/2 differs: Go's server answers first
		h2Kind     string // the refusal's kind in the log and metrics
	}{
		{
			name: "an Upgrade without its key / a :protocol on a GET",
			h1: func() (string, string) {
				return h1("GET /wss HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13")
			},
			h2: func() (string, string) {
				return h2(":method", "GET", ":protocol", "websocket", ":scheme", "https", ":path", "/wss", ":authority", "localhost", "sec-websocket-version", "13")
			},
			want: "400", kind: "bad-handshake",
		},
		{
			name: "an Upgrade without a version / an extended CONNECT without :path",
			h1: func() (string, string) {
				return h1("GET /wss HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
			},
			h2: func() (string, string) {
				return h2(":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "localhost", "sec-websocket-version", "13")
			},
			want: "426", kind: "bad-handshake",
			h2Want: "reset PROTOCOL_ERROR", h2Kind: "h2-malformed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.logs.Lines(`msg="request refused"`, "level=INFO")
			status, kind := tc.h1()
			if status != tc.want || kind != tc.kind {
				t.Errorf("HTTP/1.1: %s %s, want %s %s", status, kind, tc.want, tc.kind)
			}
			want, wantKind := tc.want, tc.kind
			if tc.h2Want != "" {
				want, wantKind = tc.h2Want, ""
			}
			if status, kind := tc.h2(); status != want || kind != wantKind {
				t.Errorf("HTTP/2: %s %q, want %s %q", status, kind, want, wantKind)
			}
			logKind := tc.kind
			if tc.h2Kind != "" {
				logKind = tc.h2Kind
			}
			more := 2 // HTTP/1.1's line and HTTP/2's
			if tc.h2Kind != "" {
				more = 1
			}
			waitFor(t, ctx, "the HTTP/2 refusal's line", func() bool {
				return len(e.logs.Lines(`msg="request refused"`, "level=INFO", "refused="+logKind)) >= len(filter(before, "refused="+logKind))+more
			})
			if n := dials.Load(); n != 0 {
				t.Errorf("the backend was dialed %d times", n)
			}
			if got := counter(t, reg, "wssproxy_requests_refused_total", "kind", logKind); got == 0 {
				t.Errorf("wssproxy_requests_refused_total{kind=%q} = 0", logKind)
			}
		})
	}
	if lines := e.logs.Lines("backend unavailable"); len(lines) != 0 {
		t.Errorf("a malformed request was taken for the backend's fault:\n%s", strings.Join(lines, "\n"))
	}
}

// filter is the lines that contain sub.
func filter(lines []string, sub string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
