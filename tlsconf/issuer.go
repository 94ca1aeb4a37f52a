package tlsconf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// acmeIssuer obtains and renews the certificates of tls.acme.hosts on
// golang.org/x/crypto/acme: one order per host (name or IP address), the
// configured profile, ARI-steered renewal with "replaces", the preferred
// chain. autocert serves as the cache: its DirCache, its file names and
// its PEM layout (key, then chain), so a cache autocert filled is read
// as it is and one filled here still works for an older wssproxy.
type acmeIssuer struct {
	log     *slog.Logger
	client  *acme.Client
	cache   autocert.Cache
	email   string
	profile string // "" names none
	chain   string // preferred_chain: a root's common name, or ""
	timing  acmeTiming

	regMu      sync.Mutex
	registered bool
	dirRead    bool
	ariURL     string // the directory's renewalInfo; "" when the CA has no ARI

	certs map[string]*acmeCert // by host, fixed at setup
	hosts []string             // in configuration order

	chMu   sync.Mutex
	alpn   map[string]*tls.Certificate // TLS-ALPN-01 answers by the validator's SNI
	tokens map[string]string           // HTTP-01 key authorizations by token

	kickMu sync.Mutex
	kick   chan struct{} // closed (and replaced) by recheck
}

// acmeTiming bounds the renewal loop's waits. Tests shorten them.
type acmeTiming struct {
	pollMax  time.Duration // longest wait between renewal-info polls
	retryMin time.Duration // first wait after a failed order, doubled per failure
	retryMax time.Duration // longest wait after failures
	orderMax time.Duration // longest one order may take
}

// A failed order is retried after 5 minutes, then 10, 20, 40 and every
// hour: each try may fail two validations (TLS-ALPN-01, then HTTP-01),
// and Let's Encrypt allows 5 failed validations per host and hour. A
// rate-limit answer's Retry-After is waited out in any case.
var defaultTiming = acmeTiming{pollMax: ariPollMax, retryMin: 5 * time.Minute, retryMax: time.Hour, orderMax: 5 * time.Minute}

// acmeCert is one host's certificate and what its renewals did.
type acmeCert struct {
	host string
	cert atomic.Pointer[tls.Certificate] // nil until loaded or ordered

	mu     sync.Mutex // one load or order at a time
	loaded bool       // the cache was read

	st        sync.Mutex // guards the rest
	errors    int64
	failures  int // in a row
	lastErr   string
	lastErrAt time.Time
	next      time.Time // planned renewal
	retryAt   time.Time // no order from a handshake before this, after a failure
	renewedAt time.Time // the last successful renewal
	// rateLimited is the Retry-After of the last failure, when the CA
	// said it was over a rate limit.
	rateLimited time.Duration
	windowOf    string // the certificate ID window and pick are of
	window      [2]time.Time
	pick        time.Time // the moment chosen in window
}

// accountKeyName is where autocert keeps the account key in its cache.
const accountKeyName = "acme_account+key"

// register loads or makes the account key, registers it with the CA
// (finding the existing account), and reads the directory's renewalInfo.
func (i *acmeIssuer) register(ctx context.Context) error {
	i.regMu.Lock()
	defer i.regMu.Unlock()
	if i.registered {
		return nil
	}
	if i.client.Key == nil {
		key, err := i.accountKey(ctx)
		if err != nil {
			return err
		}
		i.client.Key = key
	}
	var contact []string
	if i.email != "" {
		contact = []string{"mailto:" + i.email}
	}
	if _, err := i.client.Register(ctx, &acme.Account{Contact: contact}, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("register account: %w", err)
	}
	if err := i.readDirectoryLocked(ctx); err != nil {
		return err
	}
	i.registered = true
	return nil
}

// renewalInfo is the directory's renewalInfo URL ("" when the CA has no
// ARI), read once; it needs no account.
func (i *acmeIssuer) renewalInfo(ctx context.Context) (string, error) {
	i.regMu.Lock()
	defer i.regMu.Unlock()
	err := i.readDirectoryLocked(ctx)
	return i.ariURL, err
}

func (i *acmeIssuer) readDirectoryLocked(ctx context.Context) error {
	if i.dirRead {
		return nil
	}
	ari, err := renewalInfoURL(ctx, httpClient(i.client), i.client.DirectoryURL)
	if err != nil {
		return err
	}
	i.ariURL, i.dirRead = ari, true
	return nil
}

// renewalInfoURL reads the directory's renewalInfo, which acme.Directory
// does not carry.
func renewalInfoURL(ctx context.Context, hc *http.Client, dir string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, dir, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A problem document is JSON too, without renewalInfo: read as
		// a directory it would turn ARI off until the next restart.
		return "", fmt.Errorf("directory %s: %w", dir, problemOf(resp))
	}
	var d struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return "", fmt.Errorf("directory %s: %w", dir, err)
	}
	return d.RenewalInfo, nil
}

func (i *acmeIssuer) accountKey(ctx context.Context) (crypto.Signer, error) {
	data, err := i.cache.Get(ctx, accountKeyName)
	if errors.Is(err, autocert.ErrCacheMiss) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := i.cache.Put(ctx, accountKeyName, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	return parseKey(data)
}

func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil, errors.New("tlsconf: no private key in the ACME cache entry")
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
	}
}

// load reads host's certificate from the cache: autocert's layout, the
// key then the chain, under the host's name. A certificate that has
// expired, does not name host or does not match its key is a miss.
func (i *acmeIssuer) load(ctx context.Context, host string) (*tls.Certificate, error) {
	data, err := i.cache.Get(ctx, host)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(data, data) // each skips the other's blocks
	if err != nil {
		return nil, err
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return nil, err
	}
	now := time.Now()
	if now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("cached certificate for %s is outside its validity", host)
	}
	if err := cert.Leaf.VerifyHostname(host); err != nil {
		return nil, err
	}
	return &cert, nil
}

// store writes cert to the cache in autocert's layout.
func (i *acmeIssuer) store(ctx context.Context, host string, cert *tls.Certificate) error {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("tlsconf: unexpected key type %T", cert.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for _, c := range cert.Certificate {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	return i.cache.Put(ctx, host, buf.Bytes())
}

// handshakeCert is get for a handshake: an order it starts is not
// cancelled when the client gives up, so the next handshake finds the
// certificate.
func (i *acmeIssuer) handshakeCert(host string) (*tls.Certificate, error) {
	if t := i.certs[host].cert.Load(); t != nil {
		return t, nil
	}
	return i.get(context.Background(), host)
}

// get returns host's certificate: the one served, else the cached one,
// else a new order (at most one at a time per host; after a failure, no
// new one until the retry time, so handshakes cannot hammer the CA).
func (i *acmeIssuer) get(ctx context.Context, host string) (*tls.Certificate, error) {
	c := i.certs[host]
	if t := c.cert.Load(); t != nil {
		return t, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.cert.Load(); t != nil {
		return t, nil
	}
	ctx, cancel := context.WithTimeout(ctx, i.timing.orderMax)
	defer cancel()
	if !c.loaded {
		c.loaded = true
		if t, err := i.load(ctx, host); err == nil {
			c.cert.Store(t)
			return t, nil
		}
	}
	c.st.Lock()
	wait, last := time.Until(c.retryAt), c.lastErr
	c.st.Unlock()
	if wait > 0 {
		return nil, fmt.Errorf("tlsconf: no certificate for %s yet; the last order failed (%s), next try in %s", host, last, wait.Round(time.Second))
	}
	t, err := i.obtain(ctx, host, "")
	if err != nil {
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			i.failed(c, nil, err)
		}
		return nil, err
	}
	c.cert.Store(t)
	i.succeeded(c, t, false)
	return t, nil
}

// challengeCert answers a TLS-ALPN-01 validation for serverName (a host
// name, or for an IP address its reverse-DNS name, RFC 8738 §6).
func (i *acmeIssuer) challengeCert(serverName string) (*tls.Certificate, error) {
	i.chMu.Lock()
	defer i.chMu.Unlock()
	if c := i.alpn[serverName]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("tlsconf: no TLS-ALPN-01 challenge pending for %q", serverName)
}

// keyAuth is the HTTP-01 answer for token, if one is pending.
func (i *acmeIssuer) keyAuth(token string) (string, bool) {
	i.chMu.Lock()
	defer i.chMu.Unlock()
	v, ok := i.tokens[token]
	return v, ok
}

// alpnName is the SNI a TLS-ALPN-01 validator sends for identifier.
func alpnName(identifier string) string {
	ip := net.ParseIP(identifier)
	if ip == nil {
		return identifier
	}
	name, err := reverseName(ip)
	if err != nil {
		return identifier
	}
	return name
}
