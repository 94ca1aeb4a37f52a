package proxy_test

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestH2Settings guards what the TLS listener's HTTP/2 tells a browser:
// extended CONNECT is on (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, RFC 8441
// §3), up to h2_max_streams streams (default 1,000), and the flow-control
// windows that keep a stuck stream from stalling the others: 256 KiB per
// stream, and a connection window of a hundred streams' worth (25 MiB),
// which does not grow with the stream limit.
func TestH2Settings(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, route("/wss", echoBackend(t, echo.Options{})))
	h := e.h2Raw(t, ctx)
	for id, want := range map[http2.SettingID]uint32{
		http2.SettingEnableConnectProtocol: 1,
		http2.SettingMaxConcurrentStreams:  proxy.DefaultH2MaxStreams,
		http2.SettingInitialWindowSize:     256 << 10,
	} {
		if got, ok := h.settings[id]; !ok || got != want {
			t.Errorf("SETTINGS %v = %d (sent: %v), want %d", id, got, ok, want)
		}
	}
	// The connection's window is raised to 100 streams' worth at once.
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			continue
		}
		if wu, ok := f.(*http2.WindowUpdateFrame); !ok || wu.StreamID != 0 || wu.Increment != 100*256<<10-65535 {
			t.Errorf("after SETTINGS: %v, want a connection WINDOW_UPDATE to 25 MiB", f)
		}
		break
	}
}

// TestH2Handshake guards the answers to an extended CONNECT, each like the
// HTTP/1.1 handshake's: 200 with the backend's subprotocol when it
// upgrades; 404 without a route; 403 for a foreign Origin; 502 when the
// backend is down or its 101 does not answer the proxy's key; a backend's
// refusal relayed as it is; 400 for another :protocol; 426 for another
// version; 405 for a plain CONNECT.
func TestH2Handshake(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	refuser := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "says no")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "not you")
	}))
	badAccept := rawBackend(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(make([]byte, 20))+"\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	e := startProxy(t, proxy.Config{HTTP2WebSockets: &on, Routes: []proxy.Route{
		{Path: "/wss", Backend: echoBackend(t, echo.Options{Subprotocols: []string{"chat.v2"}})},
		{Path: "/origin", Backend: echoBackend(t, echo.Options{}), AllowedOrigins: []string{"https://good.example"}},
		{Path: "/down", Backend: "ws://" + testutil.ClosedPort(t)},
		{Path: "/refuse", Backend: "ws://" + refuser},
		{Path: "/badaccept", Backend: "ws://" + badAccept},
	}})
	h := e.h2Raw(t, ctx)
	id := uint32(1)
	for _, tc := range []struct {
		name     string
		path     string
		fields   []string
		status   string
		header   string // name: value the response must have
		body     string // contained in the body
		endsOpen bool   // the stream stays open (a tunnel)
	}{
		{name: "upgraded", path: "/wss", fields: []string{"sec-websocket-protocol", "chat.v1, chat.v2", "origin", "https://any.example"},
			status: "200", header: "Sec-Websocket-Protocol: chat.v2", endsOpen: true},
		{name: "no route", path: "/nothing", status: "404", header: "X-Wssproxy-Error: no-route"},
		{name: "origin refused", path: "/origin", fields: []string{"origin", "https://evil.example"}, status: "403", header: "X-Wssproxy-Error: origin"},
		{name: "origin allowed", path: "/origin", fields: []string{"origin", "https://good.example"}, status: "200", endsOpen: true},
		{name: "backend down", path: "/down", status: "502", header: "X-Wssproxy-Error: backend-dial"},
		{name: "backend refuses", path: "/refuse", status: "403", header: "X-Backend: says no", body: "not you"},
		{name: "backend's accept is wrong", path: "/badaccept", status: "502", header: "X-Wssproxy-Error: backend-bad-upgrade"},
		{name: "another protocol", path: "/wss", fields: []string{":protocol", "connect-udp"}, status: "400", header: "X-Wssproxy-Error: bad-handshake"},
		{name: "another version", path: "/wss", fields: []string{"sec-websocket-version", "8"}, status: "426", header: "Sec-Websocket-Version: 13"},
		{name: "plain CONNECT", fields: []string{":protocol", "", ":scheme", "", ":path", ""}, status: "405", header: "X-Wssproxy-Error: method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.connect(id, tc.path, tc.fields...)
			r := h.response(id)
			if r.status != tc.status {
				t.Fatalf("status %s, want %s: %v", r.status, tc.status, r)
			}
			if tc.header != "" {
				name, value, _ := strings.Cut(tc.header, ": ")
				if got := r.header.Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			if r.header.Get("Sec-Websocket-Accept") != "" {
				t.Errorf("Sec-WebSocket-Accept over HTTP/2 (RFC 8441 §5 has none)")
			}
			if tc.endsOpen && r.ended {
				t.Errorf("the tunnel's stream ended with its headers")
			}
			if !tc.endsOpen {
				h.finish(id, r)
				if !strings.Contains(string(r.body), tc.body) {
					t.Errorf("body %q, want it to contain %q", r.body, tc.body)
				}
			}
		})
		id += 2
	}
}

// TestH2WebSocketsOff guards http2_websockets = false, and that it is the
// default: an extended CONNECT is refused (405) as any CONNECT, and a
// WebSocket still opens over HTTP/1.1. (That nothing is advertised is the
// binary's part: it starts without GODEBUG=http2xconnect=1;
// cmd/wssproxy tests it.)
func TestH2WebSocketsOff(t *testing.T) {
	t.Parallel()
	off := false
	for _, tc := range []struct {
		name string
		set  *bool
	}{{"false", &off}, {"default", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 10*time.Second)
			cfg := route("/wss", echoBackend(t, echo.Options{}))
			cfg.HTTP2WebSockets = tc.set
			e := startProxy(t, cfg)
			h := e.h2Raw(t, ctx)
			h.connect(1, "/wss")
			if r := h.response(1); r.status != "405" {
				t.Errorf("extended CONNECT with http2_websockets %s: %v, want 405", tc.name, r)
			}
			c := e.mustDial(ctx, "/wss", nil)
			roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
}
