package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// run keeps every ACME certificate: loaded or ordered at once, then
// renewed when the CA's renewal info says (a moment chosen at random in
// its window; the info asked for again after its Retry-After), or with a
// third of its lifetime left where the CA has no ARI. A renewal replaces
// the certificate for new handshakes only; open connections keep theirs.
// It returns when ctx ends.
func (i *acmeIssuer) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, h := range i.hosts {
		c := i.certs[h]
		wg.Go(func() { i.keep(ctx, c) })
	}
	wg.Wait()
}

func (i *acmeIssuer) keep(ctx context.Context, c *acmeCert) {
	for {
		kick := i.kicked()
		wait := i.step(ctx, c)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-kick:
			t.Stop()
		}
	}
}

// recheck has every certificate's renewal info read again now, whatever
// the CA's Retry-After said: a reload (SIGHUP), for an operator who has
// heard of a CA incident (a window moved into the past) and will not wait
// hours for the next poll. A certificate renewed moments ago is not
// ordered again (step's retryMin).
func (i *acmeIssuer) recheck() {
	i.kickMu.Lock()
	defer i.kickMu.Unlock()
	close(i.kick)
	i.kick = make(chan struct{})
}

// kicked is closed at the next recheck.
func (i *acmeIssuer) kicked() <-chan struct{} {
	i.kickMu.Lock()
	defer i.kickMu.Unlock()
	return i.kick
}

// step does what is due for c and returns how long to wait for the next.
func (i *acmeIssuer) step(ctx context.Context, c *acmeCert) time.Duration {
	cert, err := i.get(ctx, c.host)
	if err != nil {
		return i.retryWait(c)
	}
	leaf := cert.Leaf
	ari, err := i.renewalInfo(ctx)
	if err != nil {
		i.log.Debug("ACME directory not read; renewing with a third of the lifetime left", "host", c.host, "error", err)
	}
	renewAt, poll, replaces := i.plan(ctx, c, leaf, ari)
	now := time.Now()
	if renewAt.After(now) {
		return min(renewAt.Sub(now), poll)
	}
	c.st.Lock()
	since := now.Sub(c.renewedAt)
	c.st.Unlock()
	if since < i.timing.retryMin {
		// A CA that wants a certificate it just issued replaced at once
		// again is not obeyed in a loop.
		return i.timing.retryMin - since
	}
	octx, cancel := context.WithTimeout(ctx, i.timing.orderMax)
	defer cancel()
	c.mu.Lock() // not beside a handshake's order
	t, err := i.obtain(octx, c.host, replaces)
	if err == nil {
		c.cert.Store(t)
	}
	c.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			i.failed(c, leaf, err)
		}
		return i.retryWait(c)
	}
	i.succeeded(c, t, true)
	return 0
}

// plan is when to renew leaf and when to ask the CA again at the latest,
// from the renewal info at ari ("": none, or the directory was not read).
// replaces is leaf's ARI certificate ID when the CA gave renewal info for
// it (so knows it), for the new order's replaces; "" otherwise.
func (i *acmeIssuer) plan(ctx context.Context, c *acmeCert, leaf *x509.Certificate, ari string) (renewAt time.Time, poll time.Duration, replaces string) {
	poll = i.timing.pollMax
	renewAt = defaultRenewal(leaf)
	if ari == "" {
		poll = min(poll, time.Hour) // the directory may be readable later
	} else {
		id, err := ariCertID(leaf)
		var info *renewalInfo
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			info, err = fetchRenewalInfo(rctx, httpClient(i.client), ari, id)
			cancel()
		}
		if err != nil {
			poll = min(poll, time.Hour)
			c.st.Lock()
			if id != "" && c.windowOf == id {
				// The window the CA gave for this certificate stands
				// until it says otherwise.
				renewAt = c.pick
				replaces = id
			}
			c.st.Unlock()
			i.log.Debug("ACME renewal info not read", "host", c.host, "renew_at", renewAt.Format(time.RFC3339), "error", err)
		} else {
			poll, replaces = min(poll, info.RetryAfter), id
			c.st.Lock()
			// The moment is chosen once per window, so that polls do not
			// draw again and again (and renew early). It is kept apart
			// from next, which a failure or a failed poll overwrites.
			if w := [2]time.Time{info.Start, info.End}; c.windowOf != id || c.window != w {
				c.windowOf, c.window = id, w
				c.pick = pickInWindow(info.Start, drawEnd(info, leaf), time.Now())
				if info.Explanation != "" || !info.End.After(time.Now()) {
					i.log.Info("ACME: the CA asks for renewal now", "host", c.host, "window_end", info.End.Format(time.RFC3339), "explanation", info.Explanation)
				}
			}
			renewAt = c.pick
			c.st.Unlock()
		}
	}
	c.st.Lock()
	c.next = renewAt
	c.st.Unlock()
	return renewAt, poll, replaces
}

// drawEnd is the end of the part of info's window the renewal moment is
// drawn from: the window, less any of it in the last sixth of leaf's
// lifetime. A window that runs to the expiry (Pebble's for short
// lifetimes) could otherwise put the renewal in the last seconds, with
// no time to finish or retry it. A window of a day either side of a
// third of the lifetime left (Pebble's for lifetimes of 6 days and more)
// is not changed.
func drawEnd(info *renewalInfo, leaf *x509.Certificate) time.Time {
	latest := leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 6)
	if latest.Before(info.End) && latest.After(info.Start) {
		return latest
	}
	return info.End
}

// retryWait is how long to wait after c's last failure: doubling from
// retryMin to retryMax, and at least what a rate-limited answer's
// Retry-After asked for.
func (i *acmeIssuer) retryWait(c *acmeCert) time.Duration {
	c.st.Lock()
	defer c.st.Unlock()
	d := i.timing.retryMin
	for n := 1; n < c.failures && d < i.timing.retryMax; n++ {
		d *= 2
	}
	d = max(min(d, i.timing.retryMax), c.rateLimited)
	c.retryAt = time.Now().Add(d)
	c.next = c.retryAt
	return d
}

// failed counts and logs a failed order: at warn with the CA's problem
// document, at error when the certificate served (leaf, nil for none)
// has less than a third of its lifetime left or there is none.
func (i *acmeIssuer) failed(c *acmeCert, leaf *x509.Certificate, err error) {
	c.st.Lock()
	c.errors++
	c.failures++
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.rateLimited = 0
	if d, ok := rateLimit(err); ok {
		c.rateLimited = d
	}
	n := c.errors
	c.st.Unlock()
	i.retryWait(c)
	attrs := append([]any{"host", c.host, "errors", n}, problemAttrs(err)...)
	level := slog.LevelWarn
	msg := "ACME renewal failed; the current certificate is still served"
	switch {
	case leaf == nil:
		level, msg = slog.LevelError, "ACME order failed; no certificate for this host"
	default:
		left := time.Until(leaf.NotAfter)
		attrs = append(attrs, "not_after", leaf.NotAfter.Format(time.RFC3339), "left", left.Round(time.Second).String())
		if left < leaf.NotAfter.Sub(leaf.NotBefore)/3 {
			level, msg = slog.LevelError, "ACME renewal failed with less than a third of the certificate's lifetime left"
		}
	}
	i.log.Log(context.Background(), level, msg, attrs...)
}

func (i *acmeIssuer) succeeded(c *acmeCert, t *tls.Certificate, renewal bool) {
	c.st.Lock()
	c.failures = 0
	c.retryAt = time.Time{}
	if renewal {
		c.renewedAt = time.Now()
	}
	c.st.Unlock()
	msg := "ACME certificate obtained"
	if renewal {
		msg = "ACME certificate renewed"
	}
	i.log.Info(msg, "host", c.host, "serial", t.Leaf.SerialNumber.Text(16), "not_after", t.Leaf.NotAfter.Format(time.RFC3339),
		"root", chainRoot(t.Certificate), "fingerprint_sha256", fingerprint(t))
}

// rateLimit finds a rateLimited problem in err (errors.Join'd or
// wrapped) and its Retry-After.
func rateLimit(err error) (time.Duration, bool) {
	var p *acme.Error
	if !errors.As(err, &p) {
		return 0, false
	}
	return acme.RateLimit(p)
}

// problemAttrs are log attributes of the CA's problem document (RFC 8555
// §6.7) inside err, or of err itself.
func problemAttrs(err error) []any {
	var p *acme.Error
	var oe *acme.OrderError
	var ae *acme.AuthorizationError
	switch {
	case errors.As(err, &oe) && oe.Problem != nil:
		p = oe.Problem
	case errors.As(err, &ae):
		for _, e := range ae.Errors {
			if errors.As(e, &p) {
				break
			}
		}
	default:
		errors.As(err, &p)
	}
	if p == nil {
		return []any{"error", err.Error()}
	}
	attrs := []any{"problem_type", p.ProblemType, "problem_detail", p.Detail}
	if p.StatusCode != 0 {
		attrs = append(attrs, "problem_status", p.StatusCode)
	}
	var subs []string
	for _, s := range p.Subproblems {
		subs = append(subs, s.String())
	}
	if len(subs) > 0 {
		attrs = append(attrs, "subproblems", strings.Join(subs, "; "))
	}
	return append(attrs, "error", err.Error())
}

// status describes c for Certificates.
func (c *acmeCert) status() Info {
	info := Info{Names: []string{c.host}, ACME: true}
	if t := c.cert.Load(); t != nil {
		info.NotAfter, info.Fingerprint = t.Leaf.NotAfter, fingerprint(t)
	}
	c.st.Lock()
	defer c.st.Unlock()
	info.NextRenewal, info.RenewalErrors = c.next, c.errors
	info.LastError, info.LastErrorAt = c.lastErr, c.lastErrAt
	return info
}
