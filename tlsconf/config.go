package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/wssproxy/wssproxy/internal/certpool"
	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// Config is the [tls] section: certificate files, the TLS policy, and ACME.
// The zero value serves a self-signed certificate made in memory.
type Config struct {
	// Cert and Key are one PEM certificate chain (leaf first) and its key:
	// the first certificate, served to clients without SNI.
	Cert string `toml:"cert,omitempty,omitzero"`
	Key  string `toml:"key,omitempty,omitzero"`

	// Certificates are more pairs, chosen by SNI (wildcards included).
	Certificates []KeyPair `toml:"certificate,omitempty,omitzero"`

	// MinVersion is "1.2" (the default) or "1.3". Nothing older is offered.
	MinVersion string `toml:"min_version,omitempty,omitzero"`

	// HSTS, when set, is the Strict-Transport-Security header value sent on
	// the TLS listener's responses (all but a WebSocket's 101):
	// "max-age=31536000; includeSubDomains", as written after nginx's
	// add_header or Caddy's header directive (package proxy says what is
	// accepted). Browsers that see it use only https for the host for
	// max-age seconds. Empty: no header. The HTTP server (package proxy)
	// sends it, and its Compile checks it.
	HSTS string `toml:"hsts,omitempty,omitzero"`

	// ACME obtains and renews certificates for ACME.Hosts.
	ACME ACME `toml:"acme,omitempty,omitzero"`

	// ClientCA is a PEM file of the roots that verify client
	// certificates, for routes with client_cert (package proxy).
	ClientCA string `toml:"client_ca,omitempty,omitzero"`

	// RequestClientCert makes the handshake ask for a client certificate
	// (verified against ClientCA if one is given): wssproxy sets it when a
	// route has client_cert, so browsers are not asked otherwise. It is
	// not a key of its own.
	RequestClientCert bool `toml:"-"`
}

// KeyPair is a certificate chain file and its key file.
type KeyPair struct {
	Cert string `toml:"cert,omitempty,omitzero"`
	Key  string `toml:"key,omitempty,omitzero"`
}

// ACME configures certificates from an ACME CA (Let's Encrypt by default)
// through TLS-ALPN-01 on the TLS listener and HTTP-01 on the port-80
// listener.
type ACME struct {
	// Hosts are the only names a certificate is ever requested for, so a
	// stranger's SNI never spends the CA's rate limit. Required. An IP
	// address gets an IP certificate (Let's Encrypt issues those only
	// under the shortlived profile), served to clients that connect by
	// that address or send no SNI.
	Hosts []string `toml:"hosts,omitempty,omitzero"`
	// Profile is the CA's issuance profile for every order: at Let's
	// Encrypt "classic" (90 days), "tlsserver" or "shortlived" (about 6
	// days; needed for IP addresses). Checked against the CA's directory
	// by -t and at startup. Empty: the CA's default.
	Profile string `toml:"profile,omitempty,omitzero"`
	// PreferredChain is the common name of the root whose chain to serve
	// when the CA offers alternate chains ("ISRG Root X1"). Empty: the
	// CA's default chain.
	PreferredChain string `toml:"preferred_chain,omitempty,omitzero"`
	// Email is given to the CA for expiry notices. Optional.
	Email string `toml:"email,omitempty,omitzero"`
	// CacheDir keeps account key and certificates across restarts, so a
	// restart does not order again. Default /var/lib/wssproxy/acme (the
	// container's volume).
	CacheDir string `toml:"cache_dir,omitempty,omitzero"`
	// DirectoryURL is the CA's ACME directory. Default Let's Encrypt
	// production.
	DirectoryURL string `toml:"directory_url,omitempty,omitzero"`
	// Staging uses Let's Encrypt's staging CA: untrusted certificates,
	// generous rate limits. Try a setup here first.
	Staging bool `toml:"staging,omitempty,omitzero"`
	// CARoots is a PEM file of roots to trust for DirectoryURL (private or
	// test CAs). Default: the system roots.
	CARoots string `toml:"ca_roots,omitempty,omitzero"`
	// AcceptTOS must be true: it says you accept the CA's terms of service.
	AcceptTOS bool `toml:"accept_tos,omitempty,omitzero"`
}

// Let's Encrypt's directories.
const (
	LetsEncryptURL        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingURL = "https://acme-staging-v02.api.letsencrypt.org/directory"
	DefaultCacheDir       = "/var/lib/wssproxy/acme"
)

func (a *ACME) enabled() bool {
	return len(a.Hosts) > 0 || a.Email != "" || a.CacheDir != "" || a.DirectoryURL != "" ||
		a.Staging || a.CARoots != "" || a.AcceptTOS || a.Profile != "" || a.PreferredChain != ""
}

func (a *ACME) directory() string {
	switch {
	case a.DirectoryURL != "":
		return a.DirectoryURL
	case a.Staging:
		return LetsEncryptStagingURL
	}
	return LetsEncryptURL
}

func (a *ACME) cacheDir() string {
	if a.CacheDir != "" {
		return a.CacheDir
	}
	return DefaultCacheDir
}

// FieldError is a problem with one key of the [tls] section; Key is
// relative to it ("cert", "acme.hosts", "certificate[2].key"). It is the
// same type as proxy.FieldError.
type FieldError = fielderr.FieldError

func fieldErr(key, format string, args ...any) error {
	return fielderr.Errorf(key, format, args...)
}

// pairs lists every configured key pair with the key prefix of its fields.
func (c *Config) pairs() ([]KeyPair, []string) {
	var pairs []KeyPair
	var keys []string
	if c.Cert != "" || c.Key != "" {
		pairs, keys = append(pairs, KeyPair{c.Cert, c.Key}), append(keys, "")
	}
	for i, p := range c.Certificates {
		pairs, keys = append(pairs, p), append(keys, fmt.Sprintf("certificate[%d].", i+1))
	}
	return pairs, keys
}

// Compiled is a Config checked, with what it names read: the
// certificates of its files and the roots of acme.ca_roots. Compile is the
// only way to make one and the only validator of a Config; NewManager
// compiles its Config, and wssproxy -t compiles and throws the result
// away.
type Compiled struct {
	cfg       Config
	certs     []*tls.Certificate // of cfg.pairs(), in order
	acmeRoots *x509.CertPool     // nil: the system's
	clientCAs *x509.CertPool     // client_ca; nil: none
	stamp     string             // the files' stat stamp before they were read
}

// SameClientCAs reports whether c and o verify client certificates with
// the same roots: client_ca's file may change under the same path, and a
// reload must then build a new listener configuration.
func (c *Compiled) SameClientCAs(o *Compiled) bool {
	return c.clientCAs.Equal(o.clientCAs)
}

// Compile checks every key of cfg, reads the certificate files and
// acme.ca_roots, and checks that the ACME cache directory can be written,
// creating nothing and making no network call. The error joins a
// *FieldError for every problem. hsts is not checked here: package proxy
// sends it, and its Compile checks it.
func Compile(cfg Config) (*Compiled, error) {
	var errs []error
	out := &Compiled{cfg: cfg, stamp: stamp(&cfg)}
	pairs, keys := cfg.pairs()
	for i, p := range pairs {
		switch {
		case p.Cert == "" && p.Key == "":
			errs = append(errs, fieldErr(keys[i]+"cert", "missing: a [[tls.certificate]] needs cert and key"))
		case p.Cert == "":
			errs = append(errs, fieldErr(keys[i]+"cert", "missing: the key needs its certificate"))
		case p.Key == "":
			errs = append(errs, fieldErr(keys[i]+"key", "missing: the certificate needs its key"))
		default:
			cert, err := loadKeyPair(p.Cert, p.Key)
			if err != nil {
				key := keys[i] + "cert"
				if errors.As(err, new(keyFileError)) {
					key = keys[i] + "key"
				}
				errs = append(errs, fielderr.Wrap(key, err))
				continue
			}
			out.certs = append(out.certs, cert)
		}
	}
	switch cfg.MinVersion {
	case "", "1.2", "1.3":
	case "1.0", "1.1":
		errs = append(errs, fieldErr("min_version", "TLS %s is not offered: browsers and WeChat mini programs need 1.2 or newer; use \"1.2\" or \"1.3\"", cfg.MinVersion))
	default:
		errs = append(errs, fieldErr("min_version", `must be "1.2" or "1.3", got %q`, cfg.MinVersion))
	}
	if cfg.ClientCA != "" {
		pool, _, err := certpool.ReadFile(cfg.ClientCA)
		if err != nil {
			errs = append(errs, fielderr.Wrap("client_ca", err))
		}
		out.clientCAs = pool
	}
	if cfg.ACME.enabled() {
		roots, aerrs := cfg.ACME.compile()
		out.acmeRoots = roots
		errs = append(errs, aerrs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (a *ACME) compile() (*x509.CertPool, []error) {
	var errs []error
	var roots *x509.CertPool
	if len(a.Hosts) == 0 {
		errs = append(errs, fieldErr("acme.hosts", `missing: list the names to get certificates for, e.g. ["chat.example.com"]`))
	}
	for _, h := range a.Hosts {
		switch {
		case net.ParseIP(h) != nil:
			if ip := net.ParseIP(h); !ip.IsGlobalUnicast() && !ip.IsLoopback() {
				errs = append(errs, fieldErr("acme.hosts", "%q: no CA issues a certificate for this kind of address", h))
			}
		case strings.HasPrefix(h, "*."):
			errs = append(errs, fieldErr("acme.hosts", "%q: wildcard certificates need DNS-01, which is not supported; list each name, or use a certificate file", h))
		case !strings.Contains(strings.Trim(h, "."), ".") || strings.ContainsAny(h, ":/ *"):
			errs = append(errs, fieldErr("acme.hosts", "%q is not a fully qualified host name (no port, at least one dot) nor an IP address", h))
		}
	}
	if !a.AcceptTOS {
		errs = append(errs, fieldErr("acme.accept_tos", "must be true: it says you accept the terms of service of the CA at %s", a.directory()))
	}
	if a.Staging && a.DirectoryURL != "" {
		errs = append(errs, fieldErr("acme.staging", "staging chooses Let's Encrypt's staging CA; directory_url names another: set one of them"))
	}
	if a.DirectoryURL != "" && !strings.HasPrefix(a.DirectoryURL, "https://") {
		errs = append(errs, fieldErr("acme.directory_url", "must be an https:// URL, got %q", a.DirectoryURL))
	}
	if ip := firstIP(a.Hosts); ip != "" && a.Profile != "shortlived" && (a.directory() == LetsEncryptURL || a.directory() == LetsEncryptStagingURL) {
		errs = append(errs, fieldErr("acme.hosts", "%q: Let's Encrypt issues certificates for IP addresses only under the shortlived profile; set profile = \"shortlived\"", ip))
	}
	if a.Profile != "" && strings.ContainsAny(a.Profile, " /\"\t") {
		errs = append(errs, fieldErr("acme.profile", "%q is not a profile name; Let's Encrypt's are \"classic\", \"tlsserver\" and \"shortlived\"", a.Profile))
	}
	if a.CARoots != "" {
		var err error
		if roots, _, err = certpool.ReadFile(a.CARoots); err != nil {
			errs = append(errs, fielderr.Wrap("acme.ca_roots", err))
		}
	}
	if err := checkWritableDir(a.cacheDir()); err != nil {
		errs = append(errs, fielderr.Wrap("acme.cache_dir", err))
	}
	return roots, errs
}

func firstIP(hosts []string) string {
	for _, h := range hosts {
		if net.ParseIP(h) != nil {
			return h
		}
	}
	return ""
}

// checkWritableDir checks, without creating anything, that dir is (or can
// be made) a directory this process can write.
func checkWritableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			return checkWritable(d)
		}
		if d == filepath.Dir(d) {
			return err
		}
	}
}
