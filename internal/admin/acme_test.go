package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// TestACMELastErrorLabel guards the error label of
// wssproxy_acme_last_renewal_error_timestamp_seconds: the last error
// holds the CA's problem detail, or its raw body when that is no JSON,
// so any bytes. The label is valid UTF-8 and at most 300 bytes and an
// ellipsis, so /metrics (promhttp as cmd/wssproxy serves it) answers 200
// with it; a label that is not valid UTF-8 makes the collector panic,
// which the registry turns into an error and the handler into a 500 for
// the whole scrape, expiry metrics included.
func TestACMELastErrorLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, lastErr string }{
		{"ascii", strings.Repeat("a", 500)},
		{"rune across the cut", strings.Repeat("a", 299) + "é" + strings.Repeat("b", 50)},
		{"body not UTF-8", "403 : <html>Zugriff verweigert \xfc\xe4</html>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := tlsconf.Info{Names: []string{"chat.example.com"}, NotAfter: time.Now().Add(time.Hour),
				ACME: true, RenewalErrors: 1, LastError: tc.lastErr, LastErrorAt: time.Now()}
			certs := func() []tlsconf.Info { return []tlsconf.Info{info} }
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(admin.ACMERenewals(certs), admin.CertExpiry(certs))
			rec := httptest.NewRecorder()
			promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != http.StatusOK {
				t.Fatalf("/metrics: %d %.300s", rec.Code, body)
			}
			var label string
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, `wssproxy_acme_last_renewal_error_timestamp_seconds{error="`); ok {
					label, _, _ = strings.Cut(v, `",host=`)
				}
			}
			if label == "" || !utf8.ValidString(label) || len(label) > 300+len("…") {
				t.Errorf("error label %q: valid UTF-8 %v, %d bytes", label, utf8.ValidString(label), len(label))
			}
			if !strings.Contains(string(body), `wssproxy_certificate_expiry_timestamp_seconds{host="chat.example.com"}`) {
				t.Errorf("no expiry metric in\n%s", body)
			}
		})
	}
}
