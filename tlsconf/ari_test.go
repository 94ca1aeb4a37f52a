package tlsconf

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
)

// TestARICertID guards the certificate identifier against RFC 9773
// §4.1's example: a serial whose first bit is set keeps its leading zero.
func TestARICertID(t *testing.T) {
	aki, _ := hex.DecodeString("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
	leaf := &x509.Certificate{AuthorityKeyId: aki, SerialNumber: big.NewInt(0x87654321)}
	id, err := ariCertID(leaf)
	if want := "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"; err != nil || id != want {
		t.Errorf("ariCertID = %q, %v; want %q", id, err, want)
	}
	if _, err := ariCertID(&x509.Certificate{SerialNumber: big.NewInt(1)}); err == nil {
		t.Error("a certificate without authority key identifier got an ID")
	}
}

// TestPickInWindow guards the renewal moment: inside what is left of the
// window, now when the window has passed.
func TestPickInWindow(t *testing.T) {
	now := time.Date(2027, 2, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		start, end time.Time
		lo, hi     time.Time
	}{
		{"future", now.Add(time.Hour), now.Add(2 * time.Hour), now.Add(time.Hour), now.Add(2 * time.Hour)},
		{"open now", now.Add(-time.Hour), now.Add(time.Hour), now, now.Add(time.Hour)},
		{"past", now.Add(-2 * time.Hour), now.Add(-time.Hour), now, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 {
				if got := pickInWindow(tc.start, tc.end, now); got.Before(tc.lo) || got.After(tc.hi) {
					t.Fatalf("picked %v, outside [%v, %v]", got, tc.lo, tc.hi)
				}
			}
		})
	}
}

// TestRetryAfter guards Retry-After parsing and its clamp.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2027, 2, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"21600", 6 * time.Hour},
		{"", ariPollDefault},
		{"5", ariPollMin},
		{"9999999", ariPollMax},
		{"10000000000", ariPollMax}, // 317 years: overflows time.Duration
		{"0", ariPollMin},
		{"-5", ariPollMin},
		{now.Add(2 * time.Hour).Format(http.TimeFormat), 2 * time.Hour},
		{"soon", ariPollDefault},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestReverseName guards the SNI a TLS-ALPN-01 validator sends for an
// IP identifier (RFC 8738 §6).
func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":   "1.0.0.127.in-addr.arpa",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got, err := reverseName(net.ParseIP(in)); err != nil || got != want {
			t.Errorf("reverseName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestPlanKeepsWindowThroughARIFailure guards the renewal moment across a
// renewal-info poll that fails: when the CA has moved a certificate's
// window into the past (renew now), one failed poll in between (a CA
// under load, as during the incident that moved the window) neither
// postpones the renewal to the lifetime rule nor makes later polls of
// the same window forget it.
func TestPlanKeepsWindowThroughARIFailure(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var failing atomic.Bool
	i, ari := ariPeer(t, func(w http.ResponseWriter) {
		if failing.Load() {
			http.Error(w, `{"type":"urn:ietf:params:acme:error:serverInternal"}`, http.StatusServiceUnavailable)
			return
		}
		writeWindow(w, now.Add(-2*time.Hour), now.Add(-time.Hour))
	})
	leaf := ariLeaf(now.Add(-24*time.Hour), now.Add(89*24*time.Hour))
	c := &acmeCert{host: "chat.example.com"}
	for _, step := range []struct {
		name string
		fail bool
	}{{"window in the past", false}, {"renewal info fails", true}, {"same window again", false}} {
		failing.Store(step.fail)
		renewAt, _, _ := i.plan(context.Background(), c, leaf, ari)
		if renewAt.After(time.Now()) {
			t.Errorf("%s: renewal planned for %v (in %v), want now", step.name, renewAt, time.Until(renewAt).Round(time.Hour))
		}
	}
}

// TestPlanLeavesTimeToRetry guards the renewal moment against a window
// that runs to the certificate's expiry (Pebble's for short lifetimes):
// the moment is never drawn in the last sixth of the lifetime, where a
// renewal would have no time left to finish or be retried.
func TestPlanLeavesTimeToRetry(t *testing.T) {
	t.Parallel()
	now := time.Now()
	leaf := ariLeaf(now, now.Add(30*time.Second))
	i, ari := ariPeer(t, func(w http.ResponseWriter) { writeWindow(w, leaf.NotBefore, leaf.NotAfter) })
	latest := leaf.NotAfter.Add(-5 * time.Second)
	for range 100 {
		renewAt, _, _ := i.plan(context.Background(), &acmeCert{host: "chat.example.com"}, leaf, ari)
		if renewAt.After(latest) {
			t.Fatalf("renewal planned %v before expiry, in the last sixth of a 30 s lifetime", leaf.NotAfter.Sub(renewAt))
		}
	}
}

// ariPeer serves renewal info as answer writes it; it returns an issuer
// whose client reaches it and the renewalInfo URL.
func ariPeer(t *testing.T, answer func(w http.ResponseWriter)) (*acmeIssuer, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) }))
	t.Cleanup(srv.Close)
	return &acmeIssuer{log: slog.New(slog.DiscardHandler), client: &acme.Client{HTTPClient: srv.Client()}, timing: defaultTiming}, srv.URL
}

func writeWindow(w http.ResponseWriter, start, end time.Time) {
	w.Header().Set("Retry-After", "60")
	fmt.Fprintf(w, `{"suggestedWindow":{"start":%q,"end":%q}}`, start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano))
}

// ariLeaf is a certificate with RFC 9773's example identifier.
func ariLeaf(notBefore, notAfter time.Time) *x509.Certificate {
	aki, _ := hex.DecodeString("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
	return &x509.Certificate{AuthorityKeyId: aki, SerialNumber: big.NewInt(0x87654321), NotBefore: notBefore, NotAfter: notAfter}
}

// TestRetryWait guards the back-off after failed orders that the docs
// promise: 5 minutes, doubled per failure in a row up to an hour, and
// never shorter than a rate-limit answer's Retry-After.
func TestRetryWait(t *testing.T) {
	t.Parallel()
	i := &acmeIssuer{timing: defaultTiming}
	for _, tc := range []struct {
		failures    int
		rateLimited time.Duration
		want        time.Duration
	}{
		{1, 0, 5 * time.Minute},
		{2, 0, 10 * time.Minute},
		{3, 0, 20 * time.Minute},
		{4, 0, 40 * time.Minute},
		{5, 0, time.Hour},
		{50, 0, time.Hour},
		{1, 3 * time.Hour, 3 * time.Hour},
		{5, time.Minute, time.Hour},
	} {
		c := &acmeCert{failures: tc.failures, rateLimited: tc.rateLimited}
		if got := i.retryWait(c); got != tc.want {
			t.Errorf("%d failures, rate limited for %v: wait %v, want %v", tc.failures, tc.rateLimited, got, tc.want)
		}
		if c.next != c.retryAt || time.Until(c.retryAt) > tc.want {
			t.Errorf("%d failures: retry at %v, next %v", tc.failures, c.retryAt, c.next)
		}
	}
}

// TestRateLimitFromProblem guards that a rateLimited problem answered to
// the new-order request (read by problemOf) yields its Retry-After, also
// inside the error obtain joins, and that other problems yield none.
func TestRateLimitFromProblem(t *testing.T) {
	t.Parallel()
	resp := func(typ string) *http.Response {
		return &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"7200"}},
			Body: io.NopCloser(strings.NewReader(`{"type":"` + typ + `","detail":"too many"}`))}
	}
	err := errors.Join(fmt.Errorf("tls-alpn-01: %w", problemOf(resp("urn:ietf:params:acme:error:rateLimited"))))
	if d, ok := rateLimit(err); !ok || d != 2*time.Hour {
		t.Errorf("rateLimit = %v, %v; want 2h, true", d, ok)
	}
	if d, ok := rateLimit(problemOf(resp("urn:ietf:params:acme:error:serverInternal"))); ok {
		t.Errorf("serverInternal read as a rate limit of %v", d)
	}
}

// TestRenewalInfoURLAfterCAOutage guards ARI across a CA outage: a
// directory answered with an error status (Let's Encrypt answers 503 with
// a JSON problem document during maintenance) is not taken for a CA
// without renewal info; once the CA is back its renewalInfo is used.
func TestRenewalInfoURLAfterCAOutage(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"down for maintenance"}`)
			return
		}
		fmt.Fprintf(w, `{"newOrder":%q,"renewalInfo":%q}`, "http://"+r.Host+"/new-order", "http://"+r.Host+"/ari")
	}))
	t.Cleanup(srv.Close)
	i := &acmeIssuer{client: &acme.Client{DirectoryURL: srv.URL + "/dir", HTTPClient: srv.Client()}}
	ctx := context.Background()
	if u, err := i.renewalInfo(ctx); err == nil {
		t.Errorf("directory answered 503: renewalInfo %q, no error", u)
	}
	down.Store(false)
	if u, err := i.renewalInfo(ctx); err != nil || u != srv.URL+"/ari" {
		t.Errorf("CA back: renewalInfo %q, %v; want %s/ari", u, err, srv.URL)
	}
}
