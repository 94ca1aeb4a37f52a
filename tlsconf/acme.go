package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// setupACME prepares the ACME issuer for m's ACME section, trusting
// roots (the compiled acme.ca_roots; nil: the system's) for the CA. It
// makes no network call.
func (m *Manager) setupACME(roots *x509.CertPool) error {
	a := &m.cfg.ACME
	if err := os.MkdirAll(a.cacheDir(), 0o700); err != nil {
		return fielderr.Wrap("acme.cache_dir", err)
	}
	m.acmeHosts = make(map[string]bool)
	i := &acmeIssuer{
		log: m.log, cache: autocert.DirCache(a.cacheDir()), email: a.Email,
		profile: a.Profile, chain: a.PreferredChain, timing: defaultTiming,
		certs: map[string]*acmeCert{}, alpn: map[string]*tls.Certificate{}, tokens: map[string]string{},
		kick: make(chan struct{}),
		client: &acme.Client{
			DirectoryURL: a.directory(),
			HTTPClient: caClient(roots, func(base http.RoundTripper) http.RoundTripper {
				return &orderCounter{base: base, dir: a.directory(), m: m}
			}),
			UserAgent: "wssproxy",
		},
	}
	for _, h := range a.Hosts {
		h = hostKey(h)
		if i.certs[h] != nil {
			continue
		}
		m.acmeHosts[h] = true
		if net.ParseIP(h) != nil {
			m.acmeIPs = append(m.acmeIPs, h)
		}
		i.hosts = append(i.hosts, h)
		i.certs[h] = &acmeCert{host: h}
	}
	m.acme = i
	m.log.Info("ACME", "hosts", strings.Join(i.hosts, ","), "directory", a.directory(), "cache_dir", a.cacheDir(),
		"profile", a.Profile, "preferred_chain", a.PreferredChain)
	return nil
}

// hostKey is the form of an acme.hosts entry used as a map key, a cache
// file name and the SNI to match: a lower-case name without a final dot,
// or an IP address in its canonical form (IPv4 dotted, IPv6 compressed).
func hostKey(h string) string {
	if ip := net.ParseIP(h); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			return v4.String()
		}
		return ip.String()
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// HTTPHandler serves ACME HTTP-01 challenges (with ACME configured) and
// passes every other request to fallback. Put it on the port-80 listener.
// A challenge is answered only for an ACME host (the Host header's port
// is ignored: the CA validates on port 80, tests elsewhere).
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if m.acme == nil {
		return fallback
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if !ok {
			fallback.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		ka, pending := m.acme.keyAuth(token)
		if !m.acmeHosts[hostKey(strings.Trim(host, "[]"))] || !pending {
			// One line for each, as for a challenge answered: a CA's
			// validation that finds nothing is what an operator looks for.
			m.log.Info("ACME HTTP-01 challenge", "host", r.Host, "from", r.RemoteAddr, "answer", "404 no such challenge")
			http.Error(w, "no such challenge", http.StatusNotFound)
			return
		}
		m.log.Info("ACME HTTP-01 challenge", "host", r.Host, "from", r.RemoteAddr, "answer", "key authorization")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, ka)
	})
}

// Orders is the number of certificate orders placed with the CA since
// start. A restart with a warm cache places none.
func (m *Manager) Orders() int64 { return m.orders.Load() }

// orderCounter counts new-order requests to the CA. The new-order URL is
// learned from the directory, which the ACME client fetches first.
type orderCounter struct {
	base http.RoundTripper
	dir  string
	m    *Manager

	mu       sync.Mutex
	newOrder string
}

func (o *orderCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch u := req.URL.String(); {
	case req.Method == http.MethodGet && u == o.dir && resp.StatusCode == http.StatusOK:
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return resp, nil // the client sees the short body and fails
		}
		var d struct {
			NewOrder string `json:"newOrder"`
		}
		if json.Unmarshal(body, &d) == nil {
			o.mu.Lock()
			o.newOrder = d.NewOrder
			o.mu.Unlock()
		}
	case req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated:
		o.mu.Lock()
		isOrder := u == o.newOrder
		o.mu.Unlock()
		if isOrder {
			n := o.m.orders.Add(1)
			o.m.log.Info("ACME order placed", "orders_since_start", n, "location", resp.Header.Get("Location"))
		}
	}
	return resp, nil
}
