package tlsconf_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// BenchmarkHandshake measures TLS handshakes against the Manager's TLS
// configuration with an ECDSA P-256 certificate file, over loopback, client
// and server in this process: full (no session to resume) and resumed
// (TLS 1.3 session tickets).
func BenchmarkHandshake(b *testing.B) {
	cert, clientTLS := testutil.Cert(b, "chat.example.test")
	c, k := testutil.WriteKeyPair(b, cert)
	m, err := tlsconf.NewManager(tlsconf.Config{Cert: c, Key: k}, nil)
	if err != nil {
		b.Fatal(err)
	}
	addr := serveTLS(b, m.TLSConfig())
	for _, tc := range []struct {
		name  string
		cache tls.ClientSessionCache
	}{
		{"full", nil},
		{"resumed", tls.NewLRUClientSessionCache(1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := clientTLS.Clone()
			cfg.ClientSessionCache = tc.cache
			resumed := 0
			for b.Loop() {
				conn, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				// TLS 1.3 delivers the ticket after the handshake: read it.
				conn.SetReadDeadline(time.Now().Add(time.Second))
				conn.Read(make([]byte, 1))
				if conn.ConnectionState().DidResume {
					resumed++
				}
				conn.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
			if tc.cache != nil && resumed < b.N-1 {
				b.Fatalf("resumed %d of %d", resumed, b.N)
			}
		})
	}
}
