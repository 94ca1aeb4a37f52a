package tlsconf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/crypto/acme"
)

// x/crypto/acme signs its requests itself and has no order option for
// ARI's "replaces" (RFC 9773 §5; golang/go#60958), so the new-order
// request is the one request signed here. Everything after it (the
// order's authorizations, finalization, download) goes through
// acme.Client again.

// newOrderRequest is RFC 8555 §7.4's newOrder payload with the profile
// (draft-ietf-acme-profiles) and replaces (RFC 9773 §5) fields.
type newOrderRequest struct {
	Identifiers []wireID `json:"identifiers"`
	Profile     string   `json:"profile,omitempty"`
	Replaces    string   `json:"replaces,omitempty"`
}

type wireID struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// newOrder places an order for ids and returns it as acme.Client reads
// it. The client must be registered (its KID known).
func newOrder(ctx context.Context, c *acme.Client, ids []acme.AuthzID, profile, replaces string) (*acme.Order, error) {
	dir, err := c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	req := newOrderRequest{Profile: profile, Replaces: replaces}
	for _, id := range ids {
		req.Identifiers = append(req.Identifiers, wireID{id.Type, id.Value})
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a fresh nonce after a badNonce (RFC 8555 §6.5)
		nonce, err := fetchNonce(ctx, c, dir.NonceURL)
		if err != nil {
			return nil, err
		}
		body, err := signJWS(c.Key, string(c.KID), nonce, dir.OrderURL, payload)
		if err != nil {
			return nil, err
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, dir.OrderURL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hreq.Header.Set("Content-Type", "application/jose+json")
		hreq.Header.Set("User-Agent", c.UserAgent)
		resp, err := httpClient(c).Do(hreq)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusCreated {
			resp.Body.Close()
			return c.GetOrder(ctx, resp.Header.Get("Location"))
		}
		lastErr = problemOf(resp)
		resp.Body.Close()
		var p *acme.Error
		if !errors.As(lastErr, &p) || p.ProblemType != "urn:ietf:params:acme:error:badNonce" {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

func httpClient(c *acme.Client) *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func fetchNonce(ctx context.Context, c *acme.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient(c).Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		return "", fmt.Errorf("tlsconf: no Replay-Nonce from %s (%s)", url, resp.Status)
	}
	return n, nil
}

// problemOf reads an RFC 7807 problem document from a failed response.
func problemOf(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var w struct {
		Type        string `json:"type"`
		Detail      string `json:"detail"`
		Instance    string `json:"instance"`
		Subproblems []struct {
			Type       string        `json:"type"`
			Detail     string        `json:"detail"`
			Identifier *acme.AuthzID `json:"identifier"`
		} `json:"subproblems"`
	}
	e := &acme.Error{StatusCode: resp.StatusCode, Header: resp.Header}
	if json.Unmarshal(body, &w) != nil {
		e.Detail = strings.TrimSpace(string(body))
		return e
	}
	e.ProblemType, e.Detail, e.Instance = w.Type, w.Detail, w.Instance
	for _, s := range w.Subproblems {
		e.Subproblems = append(e.Subproblems, acme.Subproblem{Type: s.Type, Detail: s.Detail, Identifier: s.Identifier})
	}
	return e
}

// signJWS is RFC 8555 §6.2's flattened JWS with the account's key ID:
// ES256 for a P-256 account key (what autocert and wssproxy make), RS256
// for an RSA one.
func signJWS(key crypto.Signer, kid, nonce, url string, payload []byte) ([]byte, error) {
	var alg string
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, fmt.Errorf("tlsconf: ACME account key on %s; only P-256 is supported", k.Curve.Params().Name)
		}
		alg = "ES256"
	case *rsa.PrivateKey:
		alg = "RS256"
	default:
		return nil, fmt.Errorf("tlsconf: ACME account key of type %T is not supported", key)
	}
	if kid == "" {
		return nil, errors.New("tlsconf: ACME account not registered")
	}
	prot, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "nonce": nonce, "url": url})
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(prot) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return nil, err
		}
		sig = make([]byte, 64) // r and s, 32 bytes each (RFC 7518 §3.4)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			return nil, err
		}
	}
	return json.Marshal(map[string]string{
		"protected": enc.EncodeToString(prot),
		"payload":   enc.EncodeToString(payload),
		"signature": enc.EncodeToString(sig),
	})
}
