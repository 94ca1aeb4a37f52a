package proxy_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// signer is a key the tests sign tokens with.
type signer struct {
	alg jose.SignatureAlgorithm
	kid string
	key crypto.Signer
}

func newSigner(t testing.TB, alg jose.SignatureAlgorithm, kid string) *signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &signer{alg: alg, kid: kid, key: k}
}

// token signs claims (sub, iss, aud, exp… as jwt.Claims, plus extra).
func (s *signer) token(t testing.TB, c jwt.Claims, extra map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(sig).Claims(c)
	if extra != nil {
		b = b.Claims(extra)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// jwk is the public key as a JSON Web Key.
func (s *signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

// writePublicPEM writes the signers' public keys as one PEM file.
func writePublicPEM(t testing.TB, ss ...*signer) string {
	t.Helper()
	var out []byte
	for _, s := range ss {
		der, err := x509.MarshalPKIXPublicKey(s.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	f := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// claims are a token's standard claims for the tests' issuer and
// audience, expiring in exp.
func claims(sub string, exp time.Duration) jwt.Claims {
	now := time.Now()
	return jwt.Claims{Subject: sub, Issuer: "https://id.test", Audience: jwt.Audience{"chat"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(exp))}
}

// TestJWTKeyFile guards [route.jwt] with key_file: ES256 and RS256 tokens
// pass with their claims as headers (a client's own copies removed); a
// missing, expired, foreign, wrongly addressed or unsigned token is 401
// with WWW-Authenticate: Bearer, a log line naming why without the token,
// and a count; the backend never sees a refused handshake.
func TestJWTKeyFile(t *testing.T) {
	t.Parallel()
	es, rs, other := newSigner(t, jose.ES256, ""), newSigner(t, jose.RS256, ""), newSigner(t, jose.ES256, "")
	rec := &recorder{}
	backend := "ws://" + testutil.Serve(t, rec)
	cfg := route("/wss", backend)
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: writePublicPEM(t, es, rs), Issuer: "https://id.test", Audience: "chat",
		TokenFrom: []string{"header:Authorization", "query:token"}, ClaimsHeaders: map[string]string{"sub": "X-User-Id", "roles": "X-Roles"}}
	reg := prometheus.NewRegistry()
	e := startProxy(t, cfg, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	ctx := testutil.Context(t, 20*time.Second)

	for _, tc := range []struct {
		name, tok, query string
		sub, roles       string
	}{
		{name: "ES256 header", tok: es.token(t, claims("tom", time.Hour), map[string]any{"roles": []string{"a", "b"}}), sub: "tom", roles: "a,b"},
		{name: "RS256 header", tok: rs.token(t, claims("ann", time.Hour), nil), sub: "ann"},
		{name: "ES256 query", query: es.token(t, claims("joe", time.Hour), nil), sub: "joe"},
	} {
		h := http.Header{"X-User-Id": {"forged"}, "X-Roles": {"admin"}}
		if tc.tok != "" {
			h.Set("Authorization", "Bearer "+tc.tok)
		}
		path := "/wss"
		if tc.query != "" {
			path += "?token=" + tc.query
		}
		c := e.mustDial(ctx, path, &websocket.DialOptions{HTTPHeader: h})
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
		c.Close(websocket.StatusNormalClosure, "")
		got := rec.last(t)
		if v := got.Header.Values("X-User-Id"); len(v) != 1 || v[0] != tc.sub {
			t.Errorf("%s: backend got X-User-Id %q, want [%q]", tc.name, v, tc.sub)
		}
		if v := got.Header.Values("X-Roles"); (tc.roles == "" && len(v) != 0) || (tc.roles != "" && (len(v) != 1 || v[0] != tc.roles)) {
			t.Errorf("%s: backend got X-Roles %q, want %q", tc.name, v, tc.roles)
		}
	}
	seen := len(rec.reqs)

	expired := claims("tom", -time.Hour)
	wrongAud := claims("tom", time.Hour)
	wrongAud.Audience = jwt.Audience{"other"}
	wrongIss := claims("tom", time.Hour)
	wrongIss.Issuer = "https://evil.test"
	for _, tc := range []struct {
		name, tok, reason string
	}{
		{"missing", "", "missing token"},
		{"expired", es.token(t, expired, nil), "token expired"},
		{"unknown key", other.token(t, claims("tom", time.Hour), nil), "bad signature"},
		{"audience", es.token(t, wrongAud, nil), "wrong audience"},
		{"issuer", rs.token(t, wrongIss, nil), "wrong issuer"},
		{"none", noneToken(t), "algorithm not allowed"},
		{"garbage", "a.b.c", "malformed token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.tok != "" {
				h.Set("Authorization", "Bearer "+tc.tok)
			}
			_, resp, err := e.dial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: h})
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("dial: %v, response %v; want 401", err, resp)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer ") || (tc.tok != "" && !strings.Contains(wa, `error="invalid_token"`)) {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			line := e.logs.Wait(t, ctx, `refused=auth-jwt reason="`+tc.reason+`"`)
			if tc.tok != "" && strings.Contains(e.logs.String(), tc.tok) {
				t.Errorf("the token is in the log: %s", line)
			}
		})
	}
	if n := counter(t, reg, "wssproxy_requests_refused_total", "kind", "auth-jwt"); n != 7 {
		t.Errorf("refused auth-jwt = %v, want 7", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != seen {
		t.Errorf("the backend saw %d refused handshakes", len(rec.reqs)-seen)
	}
}

// noneToken is an unsigned token (alg "none").
func noneToken(t testing.TB) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims("tom", time.Hour)) + "."
}

// TestJWTProtocol guards token_from "protocol", as browsers send a token:
// an entry of Sec-WebSocket-Protocol, taken out of the offer the backend
// sees (over HTTP/1.1 and HTTP/2); the backend picks the real protocol.
func TestJWTProtocol(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256, "")
	var mu sync.Mutex
	var offers []string
	backend := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		offers = append(offers, strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), "|"))
		mu.Unlock()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, msg)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	cfg := route("/wss", "ws://"+backend)
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: writePublicPEM(t, es), TokenFrom: []string{"protocol"}}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	tok := es.token(t, claims("tom", time.Hour), nil)
	for name, dial := range map[string]func(context.Context, string, *websocket.DialOptions) (*websocket.Conn, *http.Response, error){
		"h1": e.dial, "h2": e.h2(t).dial,
	} {
		c, _, err := dial(ctx, "/wss", &websocket.DialOptions{Subprotocols: []string{"chat", tok}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Subprotocol() != "chat" {
			t.Errorf("%s: subprotocol %q", name, c.Subprotocol())
		}
		roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
		c.CloseNow()
		if _, _, err := dial(ctx, "/wss", &websocket.DialOptions{Subprotocols: []string{"chat"}}); err == nil {
			t.Errorf("%s: no token in the offer, yet the handshake passed", name)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, o := range offers {
		if o != "chat" {
			t.Errorf("the backend was offered %q, want chat", o)
		}
	}
	if len(offers) != 2 {
		t.Errorf("the backend got %d handshakes, want 2", len(offers))
	}
}

// jwksServer serves a key set over HTTPS and counts its fetches.
type jwksServer struct {
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches atomic.Int32
}

func (j *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	j.fetches.Add(1)
	j.mu.Lock()
	defer j.mu.Unlock()
	w.Header().Set("Cache-Control", "public, max-age=3600")
	json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: j.keys})
}

func (j *jwksServer) set(keys ...jose.JSONWebKey) {
	j.mu.Lock()
	j.keys = keys
	j.mu.Unlock()
}

// TestJWKSRotation guards jwks_url: the set is fetched over HTTPS once and
// kept (its max-age); a token signed by a key added mid-test (a rotation)
// makes it fetched again at once; tokens naming made-up keys refresh it
// at most as the bound allows, then are refused without a fetch.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	a, b := newSigner(t, jose.ES256, "key-a"), newSigner(t, jose.RS256, "key-b")
	js := &jwksServer{}
	js.set(a.jwk())
	cert, _ := testutil.Cert(t)
	caFile, keyFile := testutil.WriteKeyPair(t, cert) // self-signed: its own root
	ln := testutil.Listen(t)
	srv := &http.Server{Handler: js, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, caFile, keyFile) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })

	cfg := route("/wss", echoBackend(t, echo.Options{}))
	cfg.Routes[0].BackendCA = caFile
	cfg.Routes[0].JWT = &proxy.JWT{JWKSURL: "https://" + ln.Addr().String() + "/jwks.json"}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	dialWith := func(tok string) error {
		c, _, err := e.dial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	for range 3 {
		if err := dialWith(a.token(t, claims("tom", time.Hour), nil)); err != nil {
			t.Fatalf("key-a: %v", err)
		}
	}
	if n := js.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for three tokens, want 1", n)
	}
	js.set(a.jwk(), b.jwk()) // the rotation
	rotated := time.Now()
	if err := dialWith(b.token(t, claims("tom", time.Hour), nil)); err != nil {
		t.Fatalf("key-b after the rotation: %v", err)
	}
	if n := js.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}
	for i := range 5 {
		made := newSigner(t, jose.ES256, "made-up")
		if err := dialWith(made.token(t, claims("tom", time.Hour), nil)); err == nil {
			t.Fatalf("made-up key %d passed", i)
		}
	}
	// The bound: two refreshes at once, then one per 30 s (a slow run
	// may have earned more since the rotation's).
	if n, most := js.fetches.Load(), 3+int32(time.Since(rotated)/(30*time.Second)); n < 3 || n > most {
		t.Errorf("%d fetches after five made-up keys, want 3 (at most %d)", n, most)
	}
	e.logs.Wait(t, ctx, `refused=auth-jwt reason="unknown key"`)
}

// TestTokenExpiryClosesTunnel guards close_at_expiry: tunnels opened
// with a token that expires in 2 s, over HTTP/1.1 and as an HTTP/2 stream,
// are closed by the proxy when it does, 1008 "token expired" to the
// client and 1001 to the backend, and counted as token_expired.
func TestTokenExpiryClosesTunnel(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256, "")
	backendClose := make(chan websocket.StatusCode, 2)
	backend := wsBackend(t, func(c *websocket.Conn, r *http.Request) {
		_, _, err := c.Read(r.Context())
		backendClose <- websocket.CloseStatus(err)
	})
	cfg := route("/wss", "ws://"+backend)
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: writePublicPEM(t, es)}
	reg := prometheus.NewRegistry()
	e := startProxy(t, cfg, func(s *proxy.Server) { s.RegisterMetrics(reg) })
	ctx := testutil.Context(t, 20*time.Second)
	// exp is whole seconds: 2 s from now, rounded up.
	tok := es.token(t, claims("tom", time.Until(time.Now().Add(2*time.Second).Truncate(time.Second).Add(time.Second))), nil)
	opts := func() *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	conns := map[string]*websocket.Conn{"HTTP/1.1": e.mustDial(ctx, "/wss", opts()), "HTTP/2": e.h2(t).mustDial(t, ctx, "/wss", opts())}
	for proto, c := range conns {
		_, _, err := c.Read(ctx) // until the proxy closes it
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
			t.Fatalf("%s: client read: %v; want close 1008 token expired", proto, err)
		}
	}
	for range conns {
		select {
		case code := <-backendClose:
			if code != websocket.StatusGoingAway {
				t.Errorf("backend got close %d, want 1001", code)
			}
		case <-ctx.Done():
			t.Fatal("the backend was not closed")
		}
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		e.logs.Wait(t, ctx, `msg="tunnel closed".*close_code=1008.*proto=`+proto+`.*auth=jwt subject=tom.*reason="token expired"`)
	}
	if n := counter(t, reg, "wssproxy_tunnels_ended_total", "reason", "token_expired"); n != 2 {
		t.Errorf("tunnels_ended{reason=token_expired} = %v, want 2", n)
	}
}

// TestJWTHMACSecret guards key_file as an HMAC secret: it needs
// algorithms to name HS256 (else the configuration is refused, as it is
// for a secret under 32 bytes), and then HS256 tokens signed with it pass.
func TestJWTHMACSecret(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	file := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(file, append(secret, '\n'), 0o600)
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("tooshort"), 0o600)
	for _, tc := range []struct {
		j    proxy.JWT
		want string
	}{
		{proxy.JWT{KeyFile: file}, `route[1].jwt.key_file: ` + file + ` holds no public key, so it would be an HMAC secret`},
		{proxy.JWT{KeyFile: short, Algorithms: []string{"HS256"}}, "route[1].jwt.key_file: an HMAC secret must be at least 32 bytes"},
	} {
		cfg := route("/wss", "ws://127.0.0.1:1")
		cfg.Routes[0].JWT = &tc.j
		if _, err := proxy.Compile(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
	cfg := route("/wss", echoBackend(t, echo.Options{}))
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: file, Algorithms: []string{"HS256"}}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jwt.Signed(sig).Claims(claims("tom", time.Hour)).Serialize()
	c := e.mustDial(ctx, "/wss", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	roundTrip(t, ctx, c, websocket.MessageText, []byte("hi"))
	es := newSigner(t, jose.ES256, "")
	if resp := handshake(t, e, ctx, "/wss", http.Header{"Authorization": {"Bearer " + es.token(t, claims("tom", time.Hour), nil)}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an ES256 token on an HS256 route: %d", resp.StatusCode)
	}
}
