package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// BenchmarkAuthHandshake measures what a route's auth adds to a WebSocket
// handshake: each op opens a WebSocket as a stream of one HTTP/2
// connection (so no TLS handshake is in it), through the proxy to the
// echo backend, and closes it. "none" is the peer the others are read
// against, in the same run: JWT ES256 and RS256 from a key_file (the
// signature check), forward_auth to an auth service on loopback (an HTTP
// round trip; the service runs in this process, so its CPU is counted),
// and basic_auth (a bcrypt comparison the first time, remembered after).
// cpu-ns/op is the whole process's CPU per handshake.
func BenchmarkAuthHandshake(b *testing.B) {
	es, rs := newSigner(b, jose.ES256, ""), newSigner(b, jose.RS256, "")
	backend := echoBackend(b, echo.Options{})
	auth := testutil.Serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User-Id", "tom")
		w.WriteHeader(http.StatusNoContent)
	}))
	basic, _ := http.NewRequest(http.MethodGet, "/", nil)
	basic.SetBasicAuth("tom", "s3cret")
	for _, tc := range []struct {
		name string
		set  func(*proxy.Route)
		h    http.Header
	}{
		{"none", func(*proxy.Route) {}, nil},
		{"jwt-ES256", func(r *proxy.Route) {
			r.JWT = &proxy.JWT{KeyFile: writePublicPEM(b, es), ClaimsHeaders: map[string]string{"sub": "X-User-Id"}}
		}, http.Header{"Authorization": {"Bearer " + es.token(b, claims("tom", time.Hour), nil)}}},
		{"jwt-RS256", func(r *proxy.Route) {
			r.JWT = &proxy.JWT{KeyFile: writePublicPEM(b, rs), ClaimsHeaders: map[string]string{"sub": "X-User-Id"}}
		}, http.Header{"Authorization": {"Bearer " + rs.token(b, claims("tom", time.Hour), nil)}}},
		{"forward", func(r *proxy.Route) {
			r.ForwardAuth, r.ForwardAuthHeaders = "http://"+auth+"/auth", []string{"X-User-Id"}
		}, http.Header{"Cookie": {"s=tom-session"}}},
		{"basic", func(r *proxy.Route) { r.BasicAuth = htpasswdFile(b, "tom", "s3cret") }, basic.Header},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := route("/wss", backend)
			tc.set(&cfg.Routes[0])
			e := startProxy(b, cfg)
			h2 := e.h2(b)
			ctx := testutil.Context(b, 5*time.Minute)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				c, _, err := h2.dial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: tc.h.Clone()})
				if err != nil {
					b.Fatal(err)
				}
				c.CloseNow()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
