package proxy_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestHSTSResponses guards where Config.HSTS goes: on every response to a
// request over TLS (HTTP/1.1 and HTTP/2: a backend's page, whose own
// Strict-Transport-Security it replaces; a backend's refusal of a
// handshake; a static file; the proxy's own errors), not on a WebSocket's
// 101, and never over a plain-HTTP listener. Without HSTS a backend's own
// header passes untouched.
func TestHSTSResponses(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	const ours, theirs = "max-age=31536000; includeSubDomains", "max-age=5"
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", theirs)
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "page")
			return
		}
		w.Header().Del("Strict-Transport-Security")
		echo.Handler(echo.Options{}).ServeHTTP(w, r)
	}))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	cfg := func(hsts string) proxy.Config {
		return proxy.Config{HSTS: hsts, Routes: []proxy.Route{
			{Path: "/app", Backend: "ws://" + backend},
			{Path: "/refuse", Backend: "ws://" + backend},
			{Path: "/files", Static: dir, StripPrefix: true},
		}}
	}
	var plainWG sync.WaitGroup
	t.Cleanup(plainWG.Wait) // after the proxy's shutdown (cleanups run last first)
	on := startProxy(t, cfg(ours))
	plain := testutil.Listen(t)
	plainWG.Go(func() { on.srv.Serve(plain) }) // the same server, without TLS
	off := startProxy(t, cfg(""))

	ws := http.Header{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	h2 := &http.Transport{TLSClientConfig: on.tls.Clone(), ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	plainClient := &http.Transport{}
	defer plainClient.CloseIdleConnections()
	for _, tc := range []struct {
		name   string
		e      *env
		rt     http.RoundTripper // nil: one HTTP/1.1 request over TLS
		url    string
		header http.Header
		status int
		want   []string
	}{
		{"backend page", on, nil, "/app/x", nil, 200, []string{ours}},
		{"backend page over HTTP/2", on, h2, "/app/x", nil, 200, []string{ours}},
		{"backend's handshake refusal", on, nil, "/refuse", ws, 403, []string{ours}},
		{"backend's plain refusal", on, nil, "/refuse", nil, 403, []string{ours}},
		{"static file", on, nil, "/files/a.txt", nil, 200, []string{ours}},
		{"static 404", on, nil, "/files/none", nil, 404, []string{ours}},
		{"proxy's 404", on, nil, "/nowhere", nil, 404, []string{ours}},
		{"proxy's 400", on, nil, "/app", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, 400, []string{ours}},
		{"plain listener", on, plainClient, "http://" + plain.Addr().String() + "/app/x", nil, 200, nil},
		{"plain listener, proxy's 404", on, plainClient, "http://" + plain.Addr().String() + "/nowhere", nil, 404, nil},
		{"off: backend's own passes", off, nil, "/app/x", nil, 200, []string{theirs}},
		{"off: proxy's 404", off, nil, "/nowhere", nil, 404, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var h http.Header
			if tc.rt == nil {
				hdr := http.Header{}
				for k, v := range tc.header {
					hdr[k] = v
				}
				status, h, _ = rawRequest(t, ctx, tc.e, "GET", tc.url, hdr)
			} else {
				url := tc.url
				if url[0] == '/' {
					url = tc.e.url("https", url)
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status, h = resp.StatusCode, resp.Header
			}
			if got := h.Values("Strict-Transport-Security"); status != tc.status || !equal(got, tc.want) {
				t.Errorf("%d, Strict-Transport-Security %q, want %d %q", status, got, tc.status, tc.want)
			}
		})
	}
	t.Run("101", func(t *testing.T) {
		c, resp, err := on.dial(ctx, "/app", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if got := resp.Header.Values("Strict-Transport-Security"); len(got) != 0 {
			t.Errorf("101 has Strict-Transport-Security %q", got)
		}
		roundTrip(t, ctx, c, websocket.MessageText, []byte("x"))
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
