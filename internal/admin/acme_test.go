package admin_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wssproxy/wssproxy/internal/admin"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// TestACMELastErrorLabel guards the error label of
// wssproxy_acme_last_renewal_error_timestamp_seconds: the last error
// holds the CA's problem detail, or its raw body when that is no JSON,
// so any bytes; the label is valid UTF-8 and at most 300 bytes and an
// ellipsis, and collecting never panics (a collector's panic inside
// Registry.Gather ends the process).
func TestACMELastErrorLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, lastErr string }{
		{"ascii", strings.Repeat("a", 500)},
		{"rune across the cut", strings.Repeat("a", 299) + "é" + strings.Repeat("b", 50)},
		{"body not UTF-8", "403 : <html>Zugriff verweigert \xfc\xe4</html>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := tlsconf.Info{Names: []string{"chat.example.com"}, ACME: true, RenewalErrors: 1, LastError: tc.lastErr, LastErrorAt: time.Now()}
			c := admin.ACMERenewals(func() []tlsconf.Info { return []tlsconf.Info{info} })
			ch := make(chan prometheus.Metric, 10)
			if err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("Collect panicked: %v", r)
					}
				}()
				c.Collect(ch)
				return nil
			}(); err != nil {
				t.Fatal(err)
			}
			close(ch)
			var found bool
			for m := range ch {
				var pb dto.Metric
				if err := m.Write(&pb); err != nil {
					t.Fatal(err)
				}
				for _, l := range pb.GetLabel() {
					if l.GetName() != "error" {
						continue
					}
					found = true
					if v := l.GetValue(); !utf8.ValidString(v) || len(v) > 300+len("…") {
						t.Errorf("error label %q: valid UTF-8 %v, %d bytes", v, utf8.ValidString(v), len(v))
					}
				}
			}
			if !found {
				t.Error("no error label")
			}
		})
	}
}
