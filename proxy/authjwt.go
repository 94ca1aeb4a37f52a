package proxy

// JWT per route ([route.jwt]): where the token is, which keys verify it,
// which claims must hold, and which go to the backend as headers. The
// signatures and the JOSE encodings are github.com/go-jose/go-jose/v4's.

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// JWT is a route's [route.jwt]: handshakes and requests on the route must
// carry a token signed by one of its keys, with its issuer and audience,
// within its times. Without one, or with a bad one, the client gets 401
// with a WWW-Authenticate: Bearer header and never reaches the backend.
type JWT struct {
	// JWKSURL is an https:// URL of a JSON Web Key Set. It is fetched when
	// first needed, kept for its Cache-Control max-age (a minute to a day;
	// an hour without one), and fetched again early when a token names a
	// key it does not hold, at most twice a minute.
	JWKSURL string `toml:"jwks_url,omitempty,omitzero"`

	// KeyFile holds the keys instead: PEM public keys or certificates, a
	// JSON Web Key Set, or anything else as an HMAC secret (which needs
	// Algorithms to name HS256, HS384 or HS512).
	KeyFile string `toml:"key_file,omitempty,omitzero"`

	// Issuer, when set, must be the token's iss.
	Issuer string `toml:"issuer,omitempty,omitzero"`

	// Audience, when set, must be among the token's aud.
	Audience string `toml:"audience,omitempty,omitzero"`

	// Algorithms are the signature algorithms accepted. Default: the
	// asymmetric ones (RS*, PS*, ES*, EdDSA); "none" never.
	Algorithms []string `toml:"algorithms,omitempty,omitzero"`

	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway *time.Duration `toml:"leeway,omitempty,omitzero"`

	// TokenFrom lists where the token is looked for, in order:
	// "header:NAME" (a "Bearer " prefix is taken off), "query:NAME",
	// "cookie:NAME", and "protocol": an entry of Sec-WebSocket-Protocol
	// that is a JWT, removed from the offer the backend sees. Browsers
	// cannot set headers on a WebSocket: they use query or protocol.
	// Default ["header:Authorization"].
	TokenFrom []string `toml:"token_from,omitempty,omitzero"`

	// ClaimsHeaders sets a header on the request to the backend from a
	// claim: { sub = "X-User-Id" }. A client's own copies are removed.
	ClaimsHeaders map[string]string `toml:"claims_headers,omitempty,omitzero"`

	// CloseAtExpiry closes a tunnel when its token's exp passes: 1008
	// "token expired" to the client, 1001 to the backend. A token already
	// past its exp is refused then, leeway or not. nil means true.
	CloseAtExpiry *bool `toml:"close_at_expiry,omitempty,omitzero"`
}

// asymmetricAlgs are the algorithms accepted by default.
var asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

var hmacAlgs = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

// jwtPlan is a route's JWT check, compiled.
type jwtPlan struct {
	algs          []jose.SignatureAlgorithm
	keys          []jose.JSONWebKey // key_file's
	jwks          *jwksCache        // jwks_url's; nil with key_file
	issuer        string
	audience      string
	leeway        time.Duration
	from          []tokenSource
	claims        []claimHeader
	closeAtExpiry bool
}

// tokenSource is one token_from entry.
type tokenSource struct {
	kind string // "header", "query", "cookie" or "protocol"
	name string
}

type claimHeader struct{ claim, header string }

// compileJWT checks a route's [route.jwt] (key is "route[N].jwt"),
// reading key_file; roots verify jwks_url (backend_ca, or the system's).
func compileJWT(key string, j *JWT, roots *x509.CertPool) (*jwtPlan, []error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	p := &jwtPlan{issuer: j.Issuer, audience: j.Audience, leeway: DefaultJWTLeeway,
		closeAtExpiry: j.CloseAtExpiry == nil || *j.CloseAtExpiry}
	if j.Leeway != nil {
		add(checkDuration(key+".leeway", *j.Leeway))
		p.leeway = *j.Leeway
	}
	hmacAllowed := false
	for _, a := range j.Algorithms {
		alg := jose.SignatureAlgorithm(a)
		switch {
		case strings.EqualFold(a, "none"):
			add(fieldErr(key+".algorithms", `"none" is never accepted: an unsigned token proves nothing`))
		case slices.Contains(hmacAlgs, alg):
			hmacAllowed = true
			p.algs = append(p.algs, alg)
		case slices.Contains(asymmetricAlgs, alg):
			p.algs = append(p.algs, alg)
		default:
			add(fieldErr(key+".algorithms", "unknown algorithm %q: use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384 or HS512", a))
		}
	}
	if len(j.Algorithms) == 0 {
		p.algs = asymmetricAlgs
	}
	switch {
	case j.JWKSURL == "" && j.KeyFile == "":
		add(fieldErr(key+".jwks_url", "missing: [route.jwt] needs jwks_url or key_file"))
	case j.JWKSURL != "" && j.KeyFile != "":
		add(fieldErr(key+".key_file", "[route.jwt] has jwks_url or key_file, not both"))
	case j.JWKSURL != "":
		u, err := url.Parse(j.JWKSURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add(fieldErr(key+".jwks_url", "must be an https:// URL, got %q", j.JWKSURL))
		} else {
			p.jwks = newJWKSCache(j.JWKSURL, roots)
		}
	default:
		keys, secret, err := readJWTKeys(j.KeyFile)
		switch {
		case err != nil:
			add(fielderr.Wrap(key+".key_file", err))
		case secret && !hmacAllowed:
			add(fieldErr(key+".key_file", `%s holds no public key, so it would be an HMAC secret: list algorithms = ["HS256"] to mean that`, j.KeyFile))
		case secret && len(keys[0].Key.([]byte)) < 32:
			add(fieldErr(key+".key_file", "an HMAC secret must be at least 32 bytes, %s has %d", j.KeyFile, len(keys[0].Key.([]byte))))
		}
		p.keys = keys
	}
	if hmacAllowed && j.JWKSURL != "" {
		add(fieldErr(key+".algorithms", "HMAC algorithms need a shared secret in key_file, not a published key set"))
	}
	from := j.TokenFrom
	if len(from) == 0 {
		from = []string{"header:Authorization"}
	}
	for _, f := range from {
		kind, name, _ := strings.Cut(f, ":")
		switch {
		case kind == "protocol" && name == "":
		case (kind == "header" || kind == "query" || kind == "cookie") && name != "":
			if kind == "header" {
				if err := checkHeaderName(name); err != nil {
					add(fielderr.Wrap(key+".token_from", err))
				}
			}
		default:
			add(fieldErr(key+".token_from", `%q: write "header:NAME", "query:NAME", "cookie:NAME" or "protocol"`, f))
			continue
		}
		p.from = append(p.from, tokenSource{kind, name})
	}
	for claim, h := range j.ClaimsHeaders {
		if err := checkHeaderName(h); err != nil {
			add(fielderr.Wrap(key+".claims_headers", err))
			continue
		}
		ch := http.CanonicalHeaderKey(h)
		if isHopByHop(ch) || isForwarding(ch) { // as forward_auth_headers
			add(fieldErr(key+".claims_headers", "%q is a header the proxy manages", h))
			continue
		}
		p.claims = append(p.claims, claimHeader{claim, ch})
	}
	sort.Slice(p.claims, func(a, b int) bool { return p.claims[a].claim < p.claims[b].claim })
	return p, errs
}

// readJWTKeys reads key_file: PEM public keys and certificates, a JSON Web
// Key Set, or (secret true) an HMAC secret.
func readJWTKeys(file string) (keys []jose.JSONWebKey, secret bool, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, false, err
	}
	var set jose.JSONWebKeySet
	if json.Unmarshal(data, &set) == nil && len(set.Keys) > 0 {
		for _, k := range set.Keys {
			if !k.Valid() {
				return nil, false, fmt.Errorf("%s: key %q is not valid", file, k.KeyID)
			}
			keys = append(keys, k.Public())
		}
		return keys, false, nil
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var pub any
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				pub = c.PublicKey
			}
		default:
			if strings.Contains(b.Type, "PRIVATE") {
				return nil, false, fmt.Errorf("%s holds a private key: give the proxy the public key only", file)
			}
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: %s: %w", file, b.Type, err)
		}
		keys = append(keys, jose.JSONWebKey{Key: pub})
	}
	if len(keys) > 0 {
		return keys, false, nil
	}
	if strings.Contains(string(data), "-----BEGIN") {
		return nil, false, fmt.Errorf("%s: no PUBLIC KEY or CERTIFICATE block", file)
	}
	return []jose.JSONWebKey{{Key: []byte(strings.TrimRight(string(data), "\r\n"))}}, true, nil
}

// jwtError is why a token was refused: reason for the log and the
// WWW-Authenticate error_description; unavailable when the proxy could
// not get its keys (503, not the client's fault).
type jwtError struct {
	reason      string
	unavailable bool
	err         error // detail for the log (never the token)
}

func (e *jwtError) Error() string { return e.reason }

// jwtOK is what a verified token gives the request.
type jwtOK struct {
	subject  string
	expiry   time.Time // zero: none
	headers  http.Header
	protocol []string // Sec-WebSocket-Protocol without the token; nil: unchanged
}

// verify finds r's token and checks it.
func (p *jwtPlan) verify(ctx context.Context, r *http.Request) (*jwtOK, *jwtError) {
	raw, protocol := p.findToken(r)
	if raw == "" {
		return nil, &jwtError{reason: "missing token"}
	}
	tok, err := jwt.ParseSigned(raw, p.algs)
	if err != nil {
		reason := "malformed token"
		if strings.Contains(err.Error(), "algorithm") {
			reason = "algorithm not allowed"
		}
		return nil, &jwtError{reason: reason, err: err}
	}
	kid := tok.Headers[0].KeyID
	keys := p.keys
	if p.jwks != nil {
		if keys, err = p.jwks.keys(ctx, kid); err != nil {
			return nil, &jwtError{reason: "key set unavailable", unavailable: true, err: err}
		}
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for _, k := range keys {
		if kid != "" && k.KeyID != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if tok.Claims(k.Key, &std, &all) == nil {
			verified = true
			break
		}
	}
	if !verified {
		if kid != "" && !slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid }) && p.jwks != nil {
			return nil, &jwtError{reason: "unknown key", err: fmt.Errorf("kid %q", kid)}
		}
		return nil, &jwtError{reason: "bad signature"}
	}
	now := time.Now()
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: p.issuer, Time: now}, p.leeway); err != nil {
		return nil, &jwtError{reason: claimsReason(err), err: err}
	}
	if p.audience != "" && !std.Audience.Contains(p.audience) {
		return nil, &jwtError{reason: "wrong audience"}
	}
	ok := &jwtOK{subject: std.Subject, protocol: protocol, headers: make(http.Header, len(p.claims))}
	if std.Expiry != nil {
		ok.expiry = std.Expiry.Time()
		if p.closeAtExpiry && !ok.expiry.After(now) {
			// It would be closed as it opened.
			return nil, &jwtError{reason: "token expired"}
		}
	}
	for _, c := range p.claims {
		if v, found := claimString(all[c.claim]); found {
			ok.headers.Set(c.header, v)
		}
	}
	return ok, nil
}

func claimsReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "token issued in the future"
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "wrong issuer"
	}
	return "bad claims"
}

// claimString is a claim as a header value: strings as they are, numbers
// and booleans as JSON writes them, arrays of those joined with commas.
// Line breaks and NULs never pass.
func claimString(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		s = v
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(v)
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			if p, ok := claimString(e); ok {
				parts = append(parts, p)
			}
		}
		s = strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		s = string(b)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", false
	}
	return s, true
}

// looksLikeJWT reports whether a subprotocol entry is a compact JWS: three
// dot-separated parts, the first a JSON object in base64url (an entry
// such as "v1.chat.example" is a subprotocol).
func looksLikeJWT(e string) bool {
	head, _, ok := strings.Cut(e, ".")
	if !ok || strings.Count(e, ".") != 2 || len(head) > 1024 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	return err == nil && len(b) > 1 && b[0] == '{'
}

// findToken returns r's token from the first source that has one, and
// for "protocol" the Sec-WebSocket-Protocol entries without it.
func (p *jwtPlan) findToken(r *http.Request) (string, []string) {
	for _, src := range p.from {
		switch src.kind {
		case "header":
			v := strings.TrimSpace(r.Header.Get(src.name))
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				v = strings.TrimSpace(v[7:])
			}
			if v != "" {
				return v, nil
			}
		case "query":
			if v := r.URL.Query().Get(src.name); v != "" {
				return v, nil
			}
		case "cookie":
			if c, err := r.Cookie(src.name); err == nil && c.Value != "" {
				return c.Value, nil
			}
		case "protocol":
			var tok string
			var rest []string
			for _, v := range r.Header["Sec-Websocket-Protocol"] {
				for e := range strings.SplitSeq(v, ",") {
					e = strings.TrimSpace(e)
					if tok == "" && looksLikeJWT(e) {
						tok = e
						continue
					}
					if e != "" {
						rest = append(rest, e)
					}
				}
			}
			if tok != "" {
				if rest == nil {
					rest = []string{} // the header goes
				}
				return tok, rest
			}
		}
	}
	return "", nil
}
