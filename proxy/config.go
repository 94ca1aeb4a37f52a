package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/tlsconf"
)

// Defaults for zero-valued Config fields.
const (
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultPingInterval      = 30 * time.Second
	DefaultPingTimeout       = 10 * time.Second
	DefaultSendTimeout       = 60 * time.Second
)

// Config is what the proxy does: its timeouts and its routes. A zero duration
// or size means the documented default; Validate reports every problem at
// once and New applies the defaults to a copy.
type Config struct {
	// HandshakeTimeout bounds the backend's answer to a forwarded opening
	// handshake (after the dial). A backend that accepts the TCP connection
	// but does not answer in time gets the client a 504. Default 10s.
	HandshakeTimeout time.Duration `toml:"handshake_timeout,omitempty,omitzero"`

	// DialTimeout bounds the TCP (and for wss backends, TLS) connection to a
	// backend. A refused or timed-out dial gets the client a 502. Default 5s.
	DialTimeout time.Duration `toml:"dial_timeout,omitempty,omitzero"`

	// ReadHeaderTimeout bounds the client's TLS handshake and request
	// headers, against slow clients. It ends at the upgrade: a tunnel has
	// no timeout unless one is configured. Default 10s.
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout,omitempty,omitzero"`

	// ShutdownTimeout is how long open tunnels get to finish after SIGTERM
	// or SIGINT before they are closed. Default 30s.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout,omitempty,omitzero"`

	// MaxHeaderBytes caps a client's request headers. Default 64 KiB.
	MaxHeaderBytes int `toml:"max_header_bytes,omitempty,omitzero"`

	// MaxConnections caps WebSocket connections through the whole proxy,
	// counting handshakes in progress; over it, clients get 503 before any
	// backend is dialed. 0: no limit.
	MaxConnections int `toml:"max_connections,omitempty,omitzero"`

	// MaxConnectionsPerIP caps them per client address (503). 0: no limit.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip,omitempty,omitzero"`

	// MaxClientConnections caps the client connections open at once on
	// the TLS listener and [redirect] together, every accepted socket
	// counted (TLS handshakes, keep-alive connections, tunnels); over it a
	// new connection is closed at once, counted and logged, and open ones
	// go on. It keeps the process below its open file limit. Default: (the
	// open file limit − 256) / 2, as a tunnel holds two descriptors.
	MaxClientConnections int `toml:"max_client_connections,omitempty,omitzero"`

	// HandshakeRatePerIP is the sustained WebSocket handshakes per second
	// one client address may make (429 beyond it). 0: no limit.
	HandshakeRatePerIP float64 `toml:"handshake_rate_per_ip,omitempty,omitzero"`

	// HandshakeBurstPerIP is how many handshakes an address may make at
	// once before the rate applies. Default: the rate, rounded up.
	HandshakeBurstPerIP int `toml:"handshake_burst_per_ip,omitempty,omitzero"`

	// TrustedProxies are the peers (CIDRs or addresses) whose
	// RealIPHeader is believed: a load balancer or CDN in front. From
	// anyone else forwarding headers are dropped. Empty: nobody.
	TrustedProxies []string `toml:"trusted_proxies,omitempty,omitzero"`

	// RealIPHeader names the header a trusted proxy puts the client in:
	// "X-Forwarded-For" (the default; walked from the right past trusted
	// hops), or a single-address header such as "CF-Connecting-IP", which
	// the backend then gets set to the address believed, and never as an
	// untrusted peer wrote it.
	RealIPHeader string `toml:"real_ip_header,omitempty,omitzero"`

	// ProxyProtocol reads a PROXY protocol header (v1 or v2) on the TLS
	// listener from the peers in ProxyProtocolFrom, which must send one;
	// the address it carries is the client's. A header from any other peer
	// is refused.
	ProxyProtocol bool `toml:"proxy_protocol,omitempty,omitzero"`

	// ProxyProtocolFrom are the load balancers allowed to send PROXY
	// headers (CIDRs or addresses). Required with ProxyProtocol.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from,omitempty,omitzero"`

	// HTTP2WebSockets carries WebSockets over HTTP/2 (RFC 8441): the TLS
	// listener advertises extended CONNECT, so a browser opens a page's
	// WebSockets as streams of the page's own HTTP/2 connection, and each
	// is bridged to the backend as an HTTP/1.1 Upgrade. nil means true;
	// false advertises nothing and browsers open an HTTP/1.1 connection
	// per WebSocket. Go 1.27 turns extended CONNECT on for the whole
	// process only (GODEBUG=http2xconnect=1 at start, which wssproxy's main
	// sets for itself), so a change applies at the next start.
	HTTP2WebSockets *bool `toml:"http2_websockets,omitempty,omitzero"`

	// Routes map request paths (and optionally hosts) to backends.
	Routes []Route `toml:"route,omitempty,omitzero"`

	// HSTS, when set, is the Strict-Transport-Security value sent on every
	// response to a request that came over TLS: the proxy's own, static
	// files, and backends' (whose own header it replaces), but not a
	// WebSocket's 101, which is the backend's. Never over plain HTTP (RFC
	// 6797 §7.2). Checked by tlsconf.CheckHSTS. It is not a key of its own:
	// wssproxy takes it from [tls] hsts.
	HSTS string `toml:"-"`
}

// H2WebSockets reports whether c carries WebSockets over HTTP/2 (the
// default).
func (c *Config) H2WebSockets() bool { return c.HTTP2WebSockets == nil || *c.HTTP2WebSockets }

func (c *Config) realIPHeader() string {
	if c.RealIPHeader == "" {
		return "X-Forwarded-For"
	}
	return c.RealIPHeader
}

// Route sends matching requests to a backend (ws, wss, http or https), a
// static directory, or a Handler. WebSocket handshakes are tunnelled; other
// requests are proxied as plain HTTP, so long-polling fallbacks and health
// URLs keep working under the same path.
type Route struct {
	// Path is a prefix that matches at segment boundaries: "/wss" matches
	// "/wss", "/wss/" and "/wss/room", never "/wssx". "= /wss" (or Exact)
	// matches "/wss" only. The longest match wins; exact beats prefix.
	Path string `toml:"path,omitempty,omitzero"`

	// Exact makes Path match only itself, like nginx's "location = /wss".
	Exact bool `toml:"exact,omitempty,omitzero"`

	// Host restricts the route to one Host header ("chat.example.com") or
	// one label under a domain ("*.example.com"). Routes naming a host are
	// preferred over routes that do not. Empty means any host.
	Host string `toml:"host,omitempty,omitzero"`

	// Backend is where requests go: "ws://127.0.0.1:8282". ws and http are
	// the same to the proxy, as are wss and https. A path in Backend
	// replaces the matched Path prefix, like nginx's proxy_pass with a URI
	// ("/wss/x" on path "/wss" with backend "ws://b/app" goes to "/app/x").
	Backend string `toml:"backend,omitempty,omitzero"`

	// Backends are several backends for one route (instead of Backend),
	// each "ws://10.0.0.1:8282" optionally followed by " weight=N".
	Backends []string `toml:"backends,omitempty,omitzero"`

	// Balance chooses among Backends: "round_robin" (the default, by
	// weight), "least_conn", or "ip_hash" (a client stays on one backend;
	// when one leaves, only its clients move).
	Balance string `toml:"balance,omitempty,omitzero"`

	// MaxRetries is how many other backends are tried when a dial fails,
	// before the client gets 502. Nothing was sent yet, so this is always
	// safe. nil: every backend once.
	MaxRetries *int `toml:"max_retries,omitempty,omitzero"`

	// MaxFails failed dials within FailTimeout take a backend out of
	// rotation for FailTimeout (nginx's max_fails). nil: 1; 0: never.
	MaxFails *int `toml:"max_fails,omitempty,omitzero"`

	// FailTimeout is nginx's fail_timeout. Default 10s.
	FailTimeout time.Duration `toml:"fail_timeout,omitempty,omitzero"`

	// HealthInterval runs an active check of every backend this often: a
	// WebSocket handshake, or an HTTP GET of HealthPath. Default off.
	HealthInterval time.Duration `toml:"health_interval,omitempty,omitzero"`

	// HealthPath, when set, makes the check an HTTP GET expecting 2xx.
	HealthPath string `toml:"health_path,omitempty,omitzero"`

	// HealthTimeout bounds one check. Default 5s.
	HealthTimeout time.Duration `toml:"health_timeout,omitempty,omitzero"`

	// UnhealthyThreshold failed checks in a row take a backend out;
	// HealthyThreshold passed ones bring it back. Defaults 3 and 2.
	UnhealthyThreshold int `toml:"unhealthy_threshold,omitempty,omitzero"`
	HealthyThreshold   int `toml:"healthy_threshold,omitempty,omitzero"`

	// BackendCA is a PEM file of roots that verify wss:// and https://
	// backends (default: the system roots).
	BackendCA string `toml:"backend_ca,omitempty,omitzero"`

	// BackendServerName is the name to verify (and send as SNI) for wss://
	// backends, when it is not the one in the URL.
	BackendServerName string `toml:"backend_server_name,omitempty,omitzero"`

	// Socket dials this unix socket instead of the backend URL's host,
	// which still gives Host and path. Or write the backend as
	// "ws+unix:///run/app/ws.sock".
	Socket string `toml:"socket,omitempty,omitzero"`

	// Static serves files from this directory instead of a backend
	// (directory listings are off; index.html is served).
	Static string `toml:"static,omitempty,omitzero"`

	// StripPrefix removes the matched Path prefix before forwarding
	// ("/wss/room" goes to "/room"). A Backend with a path does this already.
	StripPrefix bool `toml:"strip_prefix,omitempty,omitzero"`

	// SetHeaders are set on the request to the backend, after the proxy's
	// own forwarding headers, so they may override them. Setting "Host"
	// replaces the client's Host header, which is passed on by default.
	SetHeaders map[string]string `toml:"set_headers,omitempty,omitzero"`

	// RemoveHeaders are removed from the request to the backend.
	RemoveHeaders []string `toml:"remove_headers,omitempty,omitzero"`

	// HandshakeTimeout overrides the global handshake_timeout for this route.
	HandshakeTimeout time.Duration `toml:"handshake_timeout,omitempty,omitzero"`

	// PingInterval is how long a client may be silent before the proxy
	// pings it; a client that then sends nothing within PingTimeout is
	// dead, and the tunnel is closed (the backend gets 1001). The client's
	// pong is consumed, never forwarded. nil means 30s; 0 turns it off.
	PingInterval *time.Duration `toml:"ping_interval,omitempty,omitzero"`

	// PingTimeout is how long a pinged peer has to send anything. Default 10s.
	PingTimeout time.Duration `toml:"ping_timeout,omitempty,omitzero"`

	// BackendPingInterval pings the backend the same way (the client then
	// gets 1014). Default off.
	BackendPingInterval time.Duration `toml:"backend_ping_interval,omitempty,omitzero"`

	// SendTimeout is how long a write to either peer may make no progress
	// (like nginx's proxy_send_timeout): a peer that takes nothing for that
	// long has stopped reading. It is dropped and the other side gets a
	// close frame (1014 to the client, 1001 to the backend). It bounds the
	// proxy's own pings and close frames too. Default 60s.
	SendTimeout time.Duration `toml:"send_timeout,omitempty,omitzero"`

	// IdleTimeout closes a tunnel (1001 to both sides) after this long
	// without a data frame either way. Default off: idle WebSockets live.
	IdleTimeout time.Duration `toml:"idle_timeout,omitempty,omitzero"`

	// MaxLifetime closes a tunnel (1001 to both sides) this long after it
	// opened. Default off.
	MaxLifetime time.Duration `toml:"max_lifetime,omitempty,omitzero"`

	// MaxMessageSize closes a tunnel (1009 to both sides) when a frame or a
	// fragmented message would exceed it, in bytes. Default off.
	MaxMessageSize int64 `toml:"max_message_size,omitempty,omitzero"`

	// AllowedOrigins, when set, admits only WebSocket handshakes whose
	// Origin matches one entry ("https://example.com", "https://*.example.com"
	// for any subdomain); others get 403 and never reach the backend. This
	// stops cross-site WebSocket hijacking. Handshakes without Origin
	// (non-browser clients) pass unless RequireOrigin.
	AllowedOrigins []string `toml:"allowed_origins,omitempty,omitzero"`

	// RequireOrigin refuses handshakes without an Origin header (403).
	RequireOrigin bool `toml:"require_origin,omitempty,omitzero"`

	// Forwarded also sends an RFC 7239 Forwarded header (for, proto, host).
	Forwarded bool `toml:"forwarded,omitempty,omitzero"`

	// UnderscoresInHeaders passes request headers whose names contain "_"
	// on to the backend. By default they are dropped, as nginx does
	// (underscores_in_headers off): backends that fold "_" into "-" (PHP's
	// $_SERVER, Workerman, WSGI) would otherwise take a client's
	// "X_Real_IP" or "X_Forwarded_For" for the proxy's own header.
	UnderscoresInHeaders bool `toml:"underscores_in_headers,omitempty,omitzero"`

	// SendProxyProtocol starts each backend connection with a PROXY
	// protocol header carrying the client's address: "v1" or "v2".
	SendProxyProtocol string `toml:"send_proxy_protocol,omitempty,omitzero"`

	// Handler serves the route in-process instead of Backend or Static.
	// It is not a configuration key: programs that embed the proxy use it.
	Handler http.Handler `toml:"-"`
}

// FieldError is a problem with one configuration key. Key names the key as
// it is written in the file, with 1-based indexes for arrays of tables:
// "route[2].backend".
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Validate reports every problem in c, each as a *FieldError, joined.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, checkDuration("handshake_timeout", c.HandshakeTimeout))
	errs = append(errs, checkDuration("dial_timeout", c.DialTimeout))
	errs = append(errs, checkDuration("read_header_timeout", c.ReadHeaderTimeout))
	errs = append(errs, checkDuration("shutdown_timeout", c.ShutdownTimeout))
	if c.MaxHeaderBytes < 0 || (c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 1024) {
		errs = append(errs, fieldErr("max_header_bytes", "must be at least 1024, got %d", c.MaxHeaderBytes))
	}
	for _, x := range []struct {
		key string
		n   int
	}{{"max_connections", c.MaxConnections}, {"max_connections_per_ip", c.MaxConnectionsPerIP},
		{"max_client_connections", c.MaxClientConnections}, {"handshake_burst_per_ip", c.HandshakeBurstPerIP}} {
		if x.n < 0 {
			errs = append(errs, fieldErr(x.key, "must not be negative, got %d", x.n))
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		errs = append(errs, fieldErr("trusted_proxies", "%v", err))
	}
	if _, err := parsePrefixes(c.ProxyProtocolFrom); err != nil {
		errs = append(errs, fieldErr("proxy_protocol_from", "%v", err))
	}
	if c.ProxyProtocol && len(c.ProxyProtocolFrom) == 0 {
		errs = append(errs, fieldErr("proxy_protocol_from", "missing: list the load balancers that send PROXY headers; a header from anyone else is refused"))
	}
	if c.RealIPHeader != "" {
		if err := checkHeaderName(c.RealIPHeader); err != nil {
			errs = append(errs, fieldErr("real_ip_header", "%v", err))
		}
	}
	if c.HSTS != "" {
		if err := tlsconf.CheckHSTS(c.HSTS); err != nil {
			errs = append(errs, fieldErr("tls.hsts", "%v", err))
		}
	}
	if c.HandshakeRatePerIP < 0 {
		errs = append(errs, fieldErr("handshake_rate_per_ip", "must not be negative, got %v", c.HandshakeRatePerIP))
	}
	if len(c.Routes) == 0 {
		errs = append(errs, fieldErr("route", "no routes: add a [[route]] with a path and a backend"))
	}
	seen := make(map[string]int)
	for i := range c.Routes {
		key := fmt.Sprintf("route[%d]", i+1)
		r := &c.Routes[i]
		errs = append(errs, r.validate(key))
		if p, exact, err := r.pattern(); err == nil {
			id := fmt.Sprintf("%s %v %s", strings.ToLower(r.Host), exact, p)
			if j, dup := seen[id]; dup {
				errs = append(errs, fieldErr(key+".path", "%q on host %q is already route[%d]", r.Path, r.Host, j))
			}
			seen[id] = i + 1
		}
	}
	return errors.Join(errs...)
}

func (r *Route) validate(key string) error {
	var errs []error
	if _, _, err := r.pattern(); err != nil {
		errs = append(errs, &FieldError{Key: key + ".path", Err: err})
	}
	if r.Host != "" {
		if err := checkHost(r.Host); err != nil {
			errs = append(errs, &FieldError{Key: key + ".host", Err: err})
		}
	}
	targets := 0
	for _, set := range []bool{r.Backend != "" || len(r.Backends) > 0, r.Static != "", r.Handler != nil} {
		if set {
			targets++
		}
	}
	switch {
	case targets == 0:
		errs = append(errs, fieldErr(key+".backend", "missing: a route needs a backend (or backends, or static)"))
	case targets > 1:
		errs = append(errs, fieldErr(key+".backend", "a route has one of backend, backends and static"))
	case r.Backend != "" && len(r.Backends) > 0:
		errs = append(errs, fieldErr(key+".backends", "a route has backend or backends, not both"))
	}
	entries, entryKey := r.Backends, key+".backends"
	if r.Backend != "" {
		entries, entryKey = []string{r.Backend}, key+".backend"
	}
	paths := map[string]bool{}
	for _, e := range entries {
		u, _, err := parseUpstream(e)
		if err != nil {
			errs = append(errs, &FieldError{Key: entryKey, Err: err})
			continue
		}
		if strings.HasSuffix(u.Scheme, "+unix") {
			if r.Socket != "" {
				errs = append(errs, fieldErr(key+".socket", "%q already names its socket", e))
			}
			paths[""] = true
			continue
		}
		paths[u.Path] = true
		if r.StripPrefix && u.Path != "" {
			errs = append(errs, fieldErr(key+".strip_prefix", "has no effect: backend %q has a path, which already replaces the prefix", e))
		}
	}
	if len(paths) > 1 {
		errs = append(errs, fieldErr(entryKey, "backends of one route must share one path (the path replaces the route's prefix)"))
	}
	switch r.Balance {
	case "", balanceRoundRobin, balanceLeastConn, balanceIPHash:
	default:
		errs = append(errs, fieldErr(key+".balance", `must be "round_robin", "least_conn" or "ip_hash", got %q`, r.Balance))
	}
	for _, x := range []struct {
		k string
		n *int
	}{{".max_retries", r.MaxRetries}, {".max_fails", r.MaxFails}} {
		if x.n != nil && *x.n < 0 {
			errs = append(errs, fieldErr(key+x.k, "must not be negative, got %d", *x.n))
		}
	}
	if r.UnhealthyThreshold < 0 || r.HealthyThreshold < 0 {
		errs = append(errs, fieldErr(key+".unhealthy_threshold", "thresholds must not be negative"))
	}
	errs = append(errs, checkDuration(key+".fail_timeout", r.FailTimeout))
	errs = append(errs, checkDuration(key+".health_interval", r.HealthInterval))
	errs = append(errs, checkDuration(key+".health_timeout", r.HealthTimeout))
	if r.HealthPath != "" && !strings.HasPrefix(r.HealthPath, "/") {
		errs = append(errs, fieldErr(key+".health_path", "must start with /, got %q", r.HealthPath))
	}
	if r.BackendCA != "" {
		if _, err := tlsconf.LoadCertPool(r.BackendCA); err != nil {
			errs = append(errs, fieldErr(key+".backend_ca", "%v", err))
		}
	}
	if r.Static != "" {
		if fi, err := os.Stat(r.Static); err != nil {
			errs = append(errs, fieldErr(key+".static", "%v", err))
		} else if !fi.IsDir() {
			errs = append(errs, fieldErr(key+".static", "%q is not a directory", r.Static))
		}
	}
	for name, v := range r.SetHeaders {
		if err := checkHeaderName(name); err != nil {
			errs = append(errs, fieldErr(key+".set_headers", "%v", err))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			errs = append(errs, fieldErr(key+".set_headers", "value of %q contains a line break or NUL", name))
		}
		if isHopByHop(http.CanonicalHeaderKey(name)) {
			errs = append(errs, fieldErr(key+".set_headers", "%q is a hop-by-hop header the proxy manages", name))
		}
	}
	for _, name := range r.RemoveHeaders {
		if err := checkHeaderName(name); err != nil {
			errs = append(errs, fieldErr(key+".remove_headers", "%v", err))
		}
	}
	errs = append(errs, checkDuration(key+".handshake_timeout", r.HandshakeTimeout))
	if r.PingInterval != nil {
		errs = append(errs, checkDuration(key+".ping_interval", *r.PingInterval))
	}
	errs = append(errs, checkDuration(key+".ping_timeout", r.PingTimeout))
	errs = append(errs, checkDuration(key+".backend_ping_interval", r.BackendPingInterval))
	errs = append(errs, checkDuration(key+".send_timeout", r.SendTimeout))
	errs = append(errs, checkDuration(key+".idle_timeout", r.IdleTimeout))
	errs = append(errs, checkDuration(key+".max_lifetime", r.MaxLifetime))
	for _, o := range r.AllowedOrigins {
		if _, err := parseOrigin(o); err != nil {
			errs = append(errs, &FieldError{Key: key + ".allowed_origins", Err: err})
		}
	}
	switch r.SendProxyProtocol {
	case "", "v1", "v2":
	default:
		errs = append(errs, fieldErr(key+".send_proxy_protocol", `must be "v1" or "v2", got %q`, r.SendProxyProtocol))
	}
	if r.MaxMessageSize < 0 {
		errs = append(errs, fieldErr(key+".max_message_size", "must not be negative, got %d", r.MaxMessageSize))
	}
	return errors.Join(errs...)
}

// pattern returns the route's path and whether it is exact, from either
// "= /wss" or Path with Exact.
func (r *Route) pattern() (string, bool, error) {
	p, exact := r.Path, r.Exact
	if rest, ok := strings.CutPrefix(p, "="); ok {
		p, exact = strings.TrimSpace(rest), true
	}
	switch {
	case r.Path == "":
		return "", false, errors.New(`missing: write path = "/" to match every path`)
	case !strings.HasPrefix(p, "/"):
		return "", false, fmt.Errorf("must start with /, got %q", r.Path)
	case strings.ContainsAny(p, "?#"):
		return "", false, fmt.Errorf("must not contain a query or fragment, got %q", r.Path)
	case cleanPath(p) != p && cleanPath(p)+"/" != p:
		return "", false, fmt.Errorf("must be a clean path (no //, . or .. segments), got %q", r.Path)
	}
	return p, exact, nil
}

func checkHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if strings.ContainsAny(name, "*:/ ") || name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
		return fmt.Errorf(`must be a host name like "chat.example.com" or "*.example.com" (no port), got %q`, h)
	}
	return nil
}

func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return fmt.Errorf("invalid header name %q", name)
		}
	}
	return nil
}

func checkDuration(key string, d time.Duration) error {
	if d < 0 {
		return fieldErr(key, "must not be negative, got %v", d)
	}
	if d > 0 && d < time.Millisecond {
		return fieldErr(key, `%v is too short: write a unit, e.g. "10s"`, d)
	}
	return nil
}

// parseBackend checks a backend URL. ws and http are treated alike, as are
// wss and https; the returned URL keeps the scheme as written.
func parseBackend(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	case "ws+unix", "http+unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("a unix socket backend is ws+unix:///path/to.sock, got %q", s)
		}
		return u, nil
	default:
		return nil, fmt.Errorf("scheme must be ws, wss, http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("missing host:port in %q", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("must be scheme://host:port[/path] with no user, query or fragment, got %q", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return nil, fmt.Errorf("empty port in %q", s)
	}
	return u, nil
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxClientConnections == 0 {
		c.MaxClientConnections = defaultMaxClientConnections()
	}
	c.Routes = append([]Route(nil), c.Routes...)
	for i := range c.Routes {
		r := &c.Routes[i]
		def(&r.HandshakeTimeout, c.HandshakeTimeout)
		def(&r.PingTimeout, DefaultPingTimeout)
		def(&r.SendTimeout, DefaultSendTimeout)
		def(&r.FailTimeout, 10*time.Second)
		def(&r.HealthTimeout, 5*time.Second)
		if r.UnhealthyThreshold == 0 {
			r.UnhealthyThreshold = 3
		}
		if r.HealthyThreshold == 0 {
			r.HealthyThreshold = 2
		}
		if r.PingInterval == nil {
			d := DefaultPingInterval
			r.PingInterval = &d
		}
	}
	return c
}
