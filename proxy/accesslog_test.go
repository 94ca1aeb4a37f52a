package proxy_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestAccessLog guards the access log, parsed as JSON field by field: one
// line per tunnel end (with handshake time, bytes each way, the first
// close frame's code and who sent it) and one per plain request; a
// refused plain request gets exactly one line.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	logs := &testutil.Logs{}
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{
		{Path: "/wss", Backend: echoBackend(t, echo.Options{})},
		{Path: "/down", Backend: "ws://" + testutil.ClosedPort(t)},
	}}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := startProxyServer(t, srv)
	c := e.mustDial(ctx, "/wss?room=1", &websocket.DialOptions{Host: "chat.example.com"})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("tom"))
	c.Close(4000, "bye")
	waitTunnels(t, ctx, e, 0)
	for _, path := range []string{"/wss/health", "/down/x"} {
		resp, err := e.client.Get(e.url("https", path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lines := map[string][]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		lines[m["msg"].(string)] = append(lines[m["msg"].(string)], m)
	}
	tun := lines["tunnel closed"]
	if len(tun) != 1 {
		t.Fatalf("tunnel lines: %v", tun)
	}
	for k, want := range map[string]any{
		"client_ip": "127.0.0.1", "host": "chat.example.com", "path": "/wss", "route": "route[1] /wss",
		"status": 101.0, "bytes_in": float64(len(text("tom")) + len(closeWith(4000, "bye"))), // masked
		"bytes_out":  float64(len(frame(true, 0, 1, []byte("tom"), true)) + len(frame(true, 0, 8, []byte("\x0f\xa0bye"), true))),
		"close_code": 4000.0, "closed_by": "client",
	} {
		if tun[0][k] != want {
			t.Errorf("tunnel line %s = %v, want %v", k, tun[0][k], want)
		}
	}
	if ms, ok := tun[0]["handshake_ms"].(float64); !ok || ms <= 0 {
		t.Errorf("handshake_ms %v", tun[0]["handshake_ms"])
	}
	if strings.Contains(tun[0]["backend"].(string), "ws://127.0.0.1:") == false {
		t.Errorf("backend %v", tun[0]["backend"])
	}
	req := lines["request"]
	if len(req) != 1 || req[0]["path"] != "/wss/health" || req[0]["status"] != 200.0 || req[0]["method"] != "GET" || req[0]["route"] != "route[1] /wss" {
		t.Errorf("request lines: %v", req)
	}
	if ref := lines["request refused"]; len(ref) != 1 || ref[0]["path"] != "/down/x" || ref[0]["status"] != 502.0 {
		t.Errorf("refused lines: %v", ref)
	}
}
