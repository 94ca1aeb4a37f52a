package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
)

// Manager serves the certificates of a Config: files chosen by SNI and
// reloaded without touching open connections, ACME certificates for the
// ACME hosts, or the self-signed default when nothing is configured.
type Manager struct {
	log   *slog.Logger
	cfg   Config
	files atomic.Pointer[certSet]

	acme      *acmeIssuer // nil without ACME
	acmeHosts map[string]bool
	acmeIPs   []string // the IP addresses of acme.hosts, in order
	orders    atomic.Int64

	tlsConfig *tls.Config // built once: its session ticket keys live in it
	clientCAs *x509.CertPool

	reloadMu  sync.Mutex // one reload at a time
	lastStamp string     // the files' stat stamp at the last reload attempt
}

// certSet is one generation of file certificates, replaced whole on reload.
type certSet struct {
	list  []*tls.Certificate
	exact map[string]*tls.Certificate // lower-case DNS names and IPs
	wild  map[string]*tls.Certificate // ".example.com" for *.example.com
}

// NewManager compiles cfg (every problem a *FieldError, joined, as
// Compile reports them) and returns the Manager of what it compiled.
func NewManager(cfg Config, logger *slog.Logger) (*Manager, error) {
	c, err := Compile(cfg)
	if err != nil {
		return nil, err
	}
	return c.Manager(logger)
}

// Manager serves the certificate files c read and prepares ACME (creating
// its cache directory). It makes no network calls: Watch orders the ACME
// certificates the cache lacks, as does a handshake for a host that still
// has none. A nil logger discards.
func (c *Compiled) Manager(logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := c.cfg
	m := &Manager{log: logger, cfg: cfg, lastStamp: c.stamp, clientCAs: c.clientCAs}
	m.files.Store(newCertSet(nil)) // never nil: ACME alone has no files
	if len(c.certs) == 0 && !cfg.ACME.enabled() {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "localhost" {
			hosts = append(hosts, h)
		}
		cert, err := SelfSigned(hosts, 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		logger.Warn("no certificate configured: serving a self-signed certificate; browsers will warn",
			"names", strings.Join(hosts, ","), "fingerprint_sha256", fingerprint(cert))
		m.files.Store(newCertSet([]*tls.Certificate{cert}))
	} else if len(c.certs) > 0 {
		m.install(c.certs)
	}
	if cfg.ACME.enabled() {
		if err := m.setupACME(c.acmeRoots); err != nil {
			return nil, err
		}
	}
	m.tlsConfig = m.buildTLSConfig()
	return m, nil
}

// Install serves the certificates c read instead of m's, as Reload would
// after reading them itself: for a reload whose Config is m's (a changed
// Config needs a new Manager). Open connections are not touched.
func (m *Manager) Install(c *Compiled) {
	m.recheck()
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.lastStamp = c.stamp
	if len(c.certs) > 0 {
		m.install(c.certs)
	}
}

// TLSConfig is the listener's TLS configuration, the same value every
// call. Certificates are looked up per handshake, so reloads apply to new
// connections at once.
func (m *Manager) TLSConfig() *tls.Config { return m.tlsConfig }

func (m *Manager) buildTLSConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites(),
		CurvePreferences: curves(),
		NextProtos:       []string{"h2", "http/1.1"},
		GetCertificate:   m.GetCertificate,
	}
	if m.cfg.MinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if m.cfg.RequestClientCert && m.clientCAs != nil {
		// Asked for, not required: a route that requires one says 403
		// (package proxy). One given that does not verify fails here.
		c.ClientAuth, c.ClientCAs = tls.VerifyClientCertIfGiven, m.clientCAs
	}
	if m.acme != nil {
		// Without it in ALPN, TLS-ALPN-01 validation fails.
		c.NextProtos = append(c.NextProtos, acme.ALPNProto)
	}
	return c
}

// cipherSuites are the TLS 1.2 suites offered: forward secret (ECDHE) and
// AEAD only. Go's default list adds the ECDHE CBC-SHA1 suites, which
// scanners flag (obsolete CBC, LUCKY13). TLS 1.3's suites are all AEAD and
// not configurable. Go orders them itself (AES-GCM first where the CPU has
// AES instructions, ChaCha20-Poly1305 first where it does not).
func cipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// curves are the key exchanges offered, in TLS 1.2 and 1.3: the
// post-quantum X25519MLKEM768 hybrid (what current browsers and Go clients
// send first), X25519, P-256 and P-384. P-521 is left out (slow, and no
// client needs it). Setting the list freezes it: key exchanges a later Go
// adds to its defaults are not offered until they are added here.
func curves() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
}

// GetCertificate chooses the certificate for a handshake: an ACME
// challenge's, then a file certificate for the exact name, then one for a
// wildcard, then ACME for an ACME host. A client without SNI (one that
// connects by IP address) gets the ACME certificate of the address it
// connected to, when that is an ACME host; otherwise the first file
// certificate, else the first ACME IP certificate. Anything else gets the
// first file certificate, or a handshake failure when there are no files.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if m.acme != nil && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return m.acme.challengeCert(name)
	}
	set := m.files.Load()
	if c := set.match(name); c != nil {
		return c, nil
	}
	if m.acmeHosts[name] {
		return m.acme.handshakeCert(name)
	}
	if name == "" && len(m.acmeIPs) > 0 {
		if ip := localIP(hello); ip != "" && m.acmeHosts[ip] {
			return m.acme.handshakeCert(ip)
		}
		if len(set.list) == 0 {
			return m.acme.handshakeCert(m.acmeIPs[0])
		}
	}
	if len(set.list) > 0 {
		return set.list[0], nil
	}
	return nil, fmt.Errorf("tlsconf: no certificate for server name %q", name)
}

// localIP is the address the client connected to, as acme.hosts writes
// it (net.IP's String form), or "".
func localIP(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return ""
	}
	if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
		if v4 := a.IP.To4(); v4 != nil {
			return v4.String()
		}
		return a.IP.String()
	}
	return ""
}

func (s *certSet) match(name string) *tls.Certificate {
	if c := s.exact[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return s.wild[name[i:]]
	}
	return nil
}

func newCertSet(list []*tls.Certificate) *certSet {
	s := &certSet{list: list, exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for _, c := range list {
		for _, name := range certNames(c) {
			name = strings.ToLower(name)
			if suffix, ok := strings.CutPrefix(name, "*"); ok {
				if s.wild[suffix] == nil {
					s.wild[suffix] = c
				}
			} else if s.exact[name] == nil {
				s.exact[name] = c // the first file naming a host wins
			}
		}
	}
	return s
}

func certNames(c *tls.Certificate) []string {
	leaf, err := leafOf(c)
	if err != nil {
		return nil
	}
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// Covers reports whether a handshake for host would get a certificate that
// names it. host may be a wildcard ("*.example.com").
func (m *Manager) Covers(host string) bool {
	host = strings.ToLower(host)
	set := m.files.Load()
	if suffix, ok := strings.CutPrefix(host, "*"); ok {
		return set.wild[suffix] != nil
	}
	return set.match(host) != nil || m.acmeHosts[host]
}

// recheck has the CA's renewal information for every ACME certificate read
// again now, instead of after the Retry-After it gave (Reload and Install
// do it: a SIGHUP). A no-op without ACME.
func (m *Manager) recheck() {
	if m.acme != nil {
		m.acme.recheck()
	}
}

// Reload re-reads every certificate file. If any pair is unreadable,
// broken or mismatched, nothing changes: the previous certificates keep
// serving and the error names the file. Open connections are never touched.
func (m *Manager) Reload() error {
	m.recheck()
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	return m.reloadLocked(m.stamp())
}

func (m *Manager) reloadLocked(stamp string) error {
	m.lastStamp = stamp
	pairs, _ := m.cfg.pairs()
	if len(pairs) == 0 {
		return nil
	}
	var list []*tls.Certificate
	for _, p := range pairs {
		c, err := loadKeyPair(p.Cert, p.Key)
		if err != nil {
			if len(m.files.Load().list) > 0 {
				m.log.Error("certificate reload refused; still serving the previous certificates", "error", err)
			}
			return fmt.Errorf("tlsconf: %w", err)
		}
		list = append(list, c)
	}
	m.install(list)
	return nil
}

// install serves list and logs it: each certificate the first time, and a
// warning for one that expires soon.
func (m *Manager) install(list []*tls.Certificate) {
	first := len(m.files.Load().list) == 0
	m.files.Store(newCertSet(list))
	for _, c := range list {
		leaf, _ := leafOf(c)
		attrs := []any{"names", strings.Join(certNames(c), ","), "not_after", leaf.NotAfter.Format(time.RFC3339), "fingerprint_sha256", fingerprint(c)}
		if w := expiryWarning(c, time.Now()); w != "" {
			m.log.Warn(w, attrs...)
		} else if first {
			m.log.Info("certificate", attrs...)
		}
	}
	if !first {
		m.log.Info("certificates reloaded", "count", len(list))
	}
}

// Watch keeps the ACME certificates (ordered at once when the cache has
// none, renewed as the CA's renewal info says) and reloads the
// certificate files whenever they change on disk, until ctx ends. It follows symlinks, so it sees what certbot does (write new
// files, swap a symlink), what a Kubernetes secret mount does (swap a
// directory symlink), and files rewritten in place or renamed over. A
// change that does not load (half-written, mismatched) is logged once and
// retried at the next change.
func (m *Manager) Watch(ctx context.Context, every time.Duration) {
	if m.acme != nil {
		var wg sync.WaitGroup
		wg.Go(func() { m.acme.run(ctx) })
		defer wg.Wait()
	}
	if pairs, _ := m.cfg.pairs(); len(pairs) == 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp := m.stamp()
		m.reloadMu.Lock()
		if stamp != m.lastStamp {
			m.reloadLocked(stamp)
		}
		m.reloadMu.Unlock()
	}
}

// stamp identifies the current contents of the certificate files by what
// stat says of them (through symlinks).
func (m *Manager) stamp() string { return stamp(&m.cfg) }

func stamp(cfg *Config) string {
	pairs, _ := cfg.pairs()
	var b strings.Builder
	for _, p := range pairs {
		for _, f := range []string{p.Cert, p.Key} {
			fi, err := os.Stat(f)
			if err != nil {
				fmt.Fprintf(&b, "%s:%v;", f, errors.Unwrap(err))
				continue
			}
			fmt.Fprintf(&b, "%s:%d:%d:%d;", f, inode(fi), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// Info describes a certificate being served, for logs and status pages.
type Info struct {
	Names       []string  // an ACME certificate's: its host
	NotAfter    time.Time // zero: no ACME certificate yet
	Fingerprint string

	// ACME marks a certificate of tls.acme.hosts; the fields below are
	// its renewal's.
	ACME          bool
	NextRenewal   time.Time // the next planned renewal (or retry)
	RenewalErrors int64     // failed orders since start
	LastError     string    // the last failed order's error, "" for none
	LastErrorAt   time.Time
}

// Certificates lists the file certificates now served, then one entry
// per ACME host.
func (m *Manager) Certificates() []Info {
	out := m.fileCertificates()
	if m.acme != nil {
		for _, h := range m.acme.hosts {
			out = append(out, m.acme.certs[h].status())
		}
	}
	return out
}

func (m *Manager) fileCertificates() []Info {
	var out []Info
	for _, c := range m.files.Load().list {
		leaf, err := leafOf(c)
		if err != nil {
			continue
		}
		out = append(out, Info{Names: certNames(c), NotAfter: leaf.NotAfter, Fingerprint: fingerprint(c)})
	}
	return out
}
