package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// setupACME prepares autocert for m's ACME section, trusting roots (the
// compiled acme.ca_roots; nil: the system's) for the CA.
func (m *Manager) setupACME(roots *x509.CertPool) error {
	a := &m.cfg.ACME
	if err := os.MkdirAll(a.cacheDir(), 0o700); err != nil {
		return fielderr.Wrap("acme.cache_dir", err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		base.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	m.acmeHosts = make(map[string]bool)
	for _, h := range a.Hosts {
		m.acmeHosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	m.acme = &autocert.Manager{
		Prompt:     autocert.AcceptTOS, // validated: accept_tos = true
		Cache:      autocert.DirCache(a.cacheDir()),
		HostPolicy: m.hostPolicy,
		Email:      a.Email,
		Client: &acme.Client{
			DirectoryURL: a.directory(),
			HTTPClient:   &http.Client{Transport: &orderCounter{base: base, dir: a.directory(), m: m}, Timeout: time.Minute},
			UserAgent:    "wssproxy",
		},
	}
	m.log.Info("ACME", "hosts", strings.Join(a.Hosts, ","), "directory", a.directory(), "cache_dir", a.cacheDir())
	return nil
}

// hostPolicy admits only the configured ACME hosts. autocert's HTTPHandler
// passes the Host header with its port, so the port is dropped before
// comparing (x/crypto's HostWhitelist would refuse "host:8080").
func (m *Manager) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !m.acmeHosts[strings.ToLower(strings.TrimSuffix(host, "."))] {
		return fmt.Errorf("tlsconf: %q is not in tls.acme.hosts", host)
	}
	return nil
}

// HTTPHandler serves ACME HTTP-01 challenges (with ACME configured) and
// passes every other request to fallback. Put it on the port-80 listener.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if m.acme == nil {
		return fallback
	}
	challenges := m.acme.HTTPHandler(fallback)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			m.log.Info("ACME HTTP-01 challenge", "host", r.Host, "from", r.RemoteAddr)
		}
		challenges.ServeHTTP(w, r)
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
