package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// The bounds of a JSON Web Key Set's cache.
const (
	jwksDefaultAge = time.Hour        // without a Cache-Control max-age
	jwksMinAge     = time.Minute      // a shorter max-age is taken as this
	jwksMaxAge     = 24 * time.Hour   // a longer one as this
	jwksRetry      = 10 * time.Second // after a failed fetch, before the next
	jwksTimeout    = 5 * time.Second  // one fetch
	jwksMaxBytes   = 1 << 20
)

// jwksCache is one jwks_url's key set: fetched when first needed and
// when its age has passed, and early when a token names a key it does not
// hold (a rotation), as often as refreshes allows: two at once, then one
// each 30 s, so tokens with made-up key IDs cannot make the proxy hammer
// the identity provider. Handshakes that need a fetch wait for one fetch
// together; a failed fetch keeps the set it had.
type jwksCache struct {
	url       string
	client    *http.Client
	refreshes *rate.Limiter

	mu       sync.Mutex
	set      []jose.JSONWebKey
	fresh    time.Time     // the set is used as it is until then
	retry    time.Time     // no fetch before then (the last one failed)
	lastErr  error         // the last fetch's error, while retry holds
	fetching chan struct{} // closed when the fetch under way ends
}

func newJWKSCache(u string, roots *x509.CertPool) *jwksCache {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true, // one fetch an hour: no idle connection left behind
		Proxy:             nil,
	}
	return &jwksCache{url: u, client: &http.Client{Transport: tr, Timeout: jwksTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		refreshes: rate.NewLimiter(rate.Every(30*time.Second), 2)}
}

// keys returns the set to verify a token whose key ID is kid with,
// fetching it first when it is stale, or when it lacks kid and a refresh
// is allowed.
func (c *jwksCache) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		now := time.Now()
		if c.fetching != nil {
			wait := c.fetching
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		need := c.set == nil || now.After(c.fresh)
		if !need && kid != "" && attempt == 0 && !hasKID(c.set, kid) {
			need = c.refreshes.AllowN(now, 1)
		}
		if !need || now.Before(c.retry) || attempt > 1 {
			set, err := c.set, c.lastErr
			c.mu.Unlock()
			if set == nil {
				if err == nil {
					err = errors.New("no key set yet")
				}
				return nil, err
			}
			return set, nil
		}
		done := make(chan struct{})
		c.fetching = done
		c.mu.Unlock()
		// Not the handshake's context: others may be waiting on it.
		set, age, err := c.fetch()
		c.mu.Lock()
		c.fetching = nil
		if err != nil {
			c.lastErr = err
			c.retry = time.Now().Add(jwksRetry)
		} else {
			c.set, c.lastErr, c.retry = set, nil, time.Time{}
			c.fresh = time.Now().Add(age)
		}
		c.mu.Unlock()
		close(done)
	}
}

func hasKID(set []jose.JSONWebKey, kid string) bool {
	for _, k := range set {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// fetch gets the key set and how long it may be kept.
func (c *jwksCache) fetch() ([]jose.JSONWebKey, time.Duration, error) {
	resp, err := c.client.Get(c.url)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks_url: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch jwks_url %s: status %d", c.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks_url %s: %w", c.url, err)
	}
	if len(data) > jwksMaxBytes {
		return nil, 0, fmt.Errorf("fetch jwks_url %s: more than %d bytes", c.url, jwksMaxBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, 0, fmt.Errorf("jwks_url %s: %w", c.url, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("jwks_url %s: no public signing key", c.url)
	}
	return keys, maxAge(resp.Header.Get("Cache-Control")), nil
}

// maxAge is how long a Cache-Control value lets the set be kept, within
// jwksMinAge and jwksMaxAge (no-cache and no-store: the least).
func maxAge(cc string) time.Duration {
	age := jwksDefaultAge
	for d := range strings.SplitSeq(cc, ",") {
		name, v, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch {
		case strings.EqualFold(name, "no-cache") || strings.EqualFold(name, "no-store"):
			return jwksMinAge
		case strings.EqualFold(name, "max-age"):
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				n = min(n, int64(jwksMaxAge/time.Second)) // no overflow below
				age = max(time.Duration(n)*time.Second, jwksMinAge)
			}
		}
	}
	return age
}
