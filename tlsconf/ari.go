package tlsconf

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ACME Renewal Information (ARI, RFC 9773): the CA says in which window
// to renew each certificate, and may move the window (into the past, to
// have certificates replaced at once after an incident). x/crypto/acme
// has no ARI (golang/go#60958); the requests are plain GETs.

// Bounds on the CA's Retry-After between two renewal-info polls
// (RFC 9773 §4.3.3 leaves clamping to the client).
const (
	ariPollMin     = time.Minute
	ariPollMax     = 24 * time.Hour
	ariPollDefault = 6 * time.Hour // no Retry-After
)

// ariCertID is RFC 9773 §4.1's certificate identifier: the base64url
// authority key identifier and the base64url DER serial number (its
// content octets, with the leading zero that keeps it positive).
func ariCertID(leaf *x509.Certificate) (string, error) {
	if len(leaf.AuthorityKeyId) == 0 {
		return "", errors.New("tlsconf: certificate has no authority key identifier")
	}
	der, err := asn1.Marshal(leaf.SerialNumber)
	if err != nil {
		return "", err
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(leaf.AuthorityKeyId) + "." + enc.EncodeToString(raw.Bytes), nil
}

// renewalInfo is what the CA answered for one certificate.
type renewalInfo struct {
	Start, End  time.Time
	Explanation string        // the CA's explanationURL, if any
	RetryAfter  time.Duration // when to ask again, clamped
}

// fetchRenewalInfo GETs base/certID (RFC 9773 §4.2).
func fetchRenewalInfo(ctx context.Context, hc *http.Client, base, certID string) (*renewalInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/"+certID, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renewal info: %w", problemOf(resp))
	}
	var w struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
		ExplanationURL string `json:"explanationURL"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&w); err != nil {
		return nil, fmt.Errorf("renewal info: %w", err)
	}
	if !w.SuggestedWindow.Start.Before(w.SuggestedWindow.End) {
		return nil, fmt.Errorf("renewal info: window start %v is not before its end %v", w.SuggestedWindow.Start, w.SuggestedWindow.End)
	}
	return &renewalInfo{
		Start: w.SuggestedWindow.Start, End: w.SuggestedWindow.End, Explanation: w.ExplanationURL,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}, nil
}

// retryAfter reads Retry-After (seconds or an HTTP date), clamped to
// [ariPollMin, ariPollMax].
func retryAfter(v string, now time.Time) time.Duration {
	d := ariPollDefault
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		// Clamped before the multiplication, which overflows above
		// about 292 years and would turn "never" into ariPollMin.
		d = time.Duration(min(n, int(ariPollMax/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, ariPollMin), ariPollMax)
}

// pickInWindow is a moment chosen uniformly in what is left of [start,
// end) (RFC 9773 §4.2: spreads the CA's load), or now when the window has
// passed.
func pickInWindow(start, end, now time.Time) time.Time {
	if !end.After(now) {
		return now
	}
	lo := start
	if now.After(lo) {
		lo = now // inside the window: the rest of it
	}
	return lo.Add(time.Duration(rand.Int64N(int64(end.Sub(lo)))))
}

// defaultRenewal is when to renew without renewal info: with a third of
// the lifetime left, as Let's Encrypt advises and autocert did for
// 90-day certificates.
func defaultRenewal(leaf *x509.Certificate) time.Time {
	return leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
}
