package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// BenchmarkAuthorize measures one route's auth check alone, as a
// handshake or request runs it (Server.authorize, then the backend's
// headers): no TLS, no WebSocket, no backend, so what it reports is
// auth's own cost per handshake, beside "none" (the check of a route
// without auth) in the same run. forward's includes the loopback HTTP
// round trip and the auth service's work, which run in this process.
// BenchmarkAuthHandshake (auth_bench_test.go) measures whole handshakes.
func BenchmarkAuthorize(b *testing.B) {
	dir := b.TempDir()
	es, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyFile := func(name string, pub crypto.PublicKey) string {
		der, _ := x509.MarshalPKIXPublicKey(pub)
		f := filepath.Join(dir, name)
		os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
		return f
	}
	token := func(alg jose.SignatureAlgorithm, key any) string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, nil)
		tok, _ := jwt.Signed(sig).Claims(jwt.Claims{Subject: "tom", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
		return "Bearer " + tok
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	authSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User-Id", "tom")
		w.WriteHeader(http.StatusNoContent)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { authSrv.Serve(ln) })
	defer func() { authSrv.Close(); wg.Wait() }()

	for _, tc := range []struct {
		name  string
		route Route
		auth  string // the Authorization header
	}{
		{"none", Route{}, ""},
		{"jwt-ES256", Route{JWT: &JWT{KeyFile: keyFile("es.pem", &es.PublicKey), ClaimsHeaders: map[string]string{"sub": "X-User-Id"}}}, token(jose.ES256, es)},
		{"jwt-RS256", Route{JWT: &JWT{KeyFile: keyFile("rs.pem", &rs.PublicKey), ClaimsHeaders: map[string]string{"sub": "X-User-Id"}}}, token(jose.RS256, rs)},
		{"forward", Route{ForwardAuth: "http://" + ln.Addr().String() + "/auth", ForwardAuthHeaders: []string{"X-User-Id"}}, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.route.Path, tc.route.Backend = "/wss", "ws://127.0.0.1:1"
			s, err := New(Config{Routes: []Route{tc.route}}, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rt := s.state.Load().router.routes[0]
			req := httptest.NewRequest(http.MethodGet, "https://chat.example/wss?room=1", nil)
			req.Header.Set("Authorization", tc.auth)
			req.Header.Set("Cookie", "s=tom-session")
			w := httptest.NewRecorder()
			out := make(http.Header)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				r, ok := s.authorize(w, req, rt)
				if !ok {
					b.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				rt.applyAuth(out, r)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is this process's user and system CPU time: on a shared
// machine steadier than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
