package proxy_test

import (
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// TestJWTTimesAndCookie guards the documented time checks and token
// sources not covered elsewhere: leeway (default 30 s) on exp (with
// close_at_expiry off), nbf and iat, each refused past it with its
// reason; and token_from "cookie:NAME".
func TestJWTTimesAndCookie(t *testing.T) {
	t.Parallel()
	es := newSigner(t, "ES256", "")
	off := false
	cfg := route("/wss", echoBackend(t, echo.Options{}))
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: writePublicPEM(t, es), CloseAtExpiry: &off, TokenFrom: []string{"cookie:jwt", "header:Authorization"}}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	now := time.Now()
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	for _, tc := range []struct {
		name   string
		c      jwt.Claims
		status int
		reason string
	}{
		{"exp within leeway", jwt.Claims{Subject: "tom", Expiry: at(-10 * time.Second)}, http.StatusSwitchingProtocols, ""},
		{"exp past leeway", jwt.Claims{Subject: "tom", Expiry: at(-time.Minute)}, http.StatusUnauthorized, "token expired"},
		{"nbf within leeway", jwt.Claims{Subject: "tom", NotBefore: at(10 * time.Second), Expiry: at(time.Hour)}, http.StatusSwitchingProtocols, ""},
		{"nbf past leeway", jwt.Claims{Subject: "tom", NotBefore: at(time.Minute), Expiry: at(time.Hour)}, http.StatusUnauthorized, "token not valid yet"},
		{"iat past leeway", jwt.Claims{Subject: "tom", IssuedAt: at(time.Minute), Expiry: at(time.Hour)}, http.StatusUnauthorized, "token issued in the future"},
	} {
		tok := es.token(t, tc.c, nil)
		resp := handshake(t, e, ctx, "/wss", http.Header{"Cookie": {"jwt=" + tok}})
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if tc.reason != "" {
			e.logs.Wait(t, ctx, `refused=auth-jwt reason="`+tc.reason+`"`)
		}
	}
}

// TestJWKSBounded guards what a jwks_url may make the proxy take: a body
// over 1 MiB is refused (the key set unavailable: 503 auth-unavailable,
// the token never reaching the backend), and so is a redirect (never
// followed).
func TestJWKSBounded(t *testing.T) {
	t.Parallel()
	es := newSigner(t, "ES256", "k")
	cert, _ := testutil.Cert(t)
	caFile, keyFile := testutil.WriteKeyPair(t, cert)
	ln := testutil.Listen(t)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/big", http.StatusFound)
			return
		}
		w.Write([]byte(`{"keys":[],"pad":"`))
		w.Write(make([]byte, 2<<20))
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, caFile, keyFile) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	cfg := route("/big", echoBackend(t, echo.Options{}))
	cfg.Routes[0].BackendCA = caFile
	cfg.Routes[0].JWT = &proxy.JWT{JWKSURL: "https://" + ln.Addr().String() + "/big"}
	cfg.Routes = append(cfg.Routes, cfg.Routes[0])
	cfg.Routes[1].Path = "/redirect"
	cfg.Routes[1].JWT = &proxy.JWT{JWKSURL: "https://" + ln.Addr().String() + "/redirect"}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	tok := es.token(t, claims("tom", time.Hour), nil)
	for path, why := range map[string]string{"/big": "more than 1048576 bytes", "/redirect": "status 302"} {
		resp := handshake(t, e, ctx, path, http.Header{"Authorization": {"Bearer " + tok}})
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: %d, want 503", path, resp.StatusCode)
		}
		e.logs.Wait(t, ctx, `refused=auth-unavailable.*`+why)
	}
}

// TestJWTAlgorithmConfusion guards the classic confusions: with HS256
// listed beside ES256 and a PEM public key as key_file, a token HMAC'd
// with that key's PEM bytes is refused; and a token validly signed by a
// key of the file with an algorithm not in algorithms is refused.
func TestJWTAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	es, rs := newSigner(t, "ES256", ""), newSigner(t, "RS256", "")
	pemFile := writePublicPEM(t, es, rs)
	pemBytes, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := route("/wss", echoBackend(t, echo.Options{}))
	cfg.Routes[0].JWT = &proxy.JWT{KeyFile: pemFile, Algorithms: []string{"ES256", "HS256"}}
	e := startProxy(t, cfg)
	ctx := testutil.Context(t, 20*time.Second)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pemBytes}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hmacd, _ := jwt.Signed(sig).Claims(claims("tom", time.Hour)).Serialize()
	for name, tok := range map[string]string{"HS256 with the public key": hmacd, "RS256 not listed": rs.token(t, claims("tom", time.Hour), nil)} {
		if resp := handshake(t, e, ctx, "/wss", http.Header{"Authorization": {"Bearer " + tok}}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, resp.StatusCode)
		}
	}
	if resp := handshake(t, e, ctx, "/wss", http.Header{"Authorization": {"Bearer " + es.token(t, claims("tom", time.Hour), nil)}}); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("ES256: %d, want 101", resp.StatusCode)
	}
}
