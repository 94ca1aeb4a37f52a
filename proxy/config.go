package proxy

import (
	"net/http"
	"time"
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
	DefaultUpgradeDrain      = 10 * time.Minute
	DefaultH2MaxStreams      = 1000

	DefaultForwardAuthTimeout = 5 * time.Second
	DefaultJWTLeeway          = 30 * time.Second
)

// Config is what the proxy does: its timeouts and its routes. A zero duration
// or size means the documented default. Compile checks a Config (every
// problem at once) and applies the defaults to a copy; New and Reload
// serve what it compiled.
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

	// CloseSpread spreads the 1001 close frames of a shutdown over this
	// window, each tunnel at a random moment in it, so that clients do not
	// all reconnect in the same second. It must be shorter than
	// ShutdownTimeout. nil: a third of ShutdownTimeout; 0: all at once.
	CloseSpread *time.Duration `toml:"close_spread,omitempty,omitzero"`

	// UpgradeDrain is how long a process replaced by a binary upgrade
	// keeps its tunnels: their 1012 Service Restart close frames are
	// spread over it, and the process exits when the last has ended.
	// Default 10m.
	UpgradeDrain time.Duration `toml:"upgrade_drain,omitempty,omitzero"`

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
	// go on. Default: (the open file limit − 256) / 2, as a tunnel holds
	// two descriptors, so that idle client connections alone cannot take
	// the descriptors tunnels need for their backends; the descriptor
	// budget (MaxDescriptorsPerIP) bounds clients and backends together.
	MaxClientConnections int `toml:"max_client_connections,omitempty,omitzero"`

	// MaxDescriptorsPerIP is how many of the proxy's file descriptors
	// one client address may hold: its client connections (charged to
	// the TCP peer, unless the peer is in TrustedProxies or
	// ProxyProtocolFrom) and the backend connections of its WebSockets
	// and requests. Every socket counts against a budget of the open file
	// limit less 256 (fdbudget.go); over it, or over an address's share,
	// a new connection is closed at accept and a handshake or request gets
	// 503, counted and logged. nil: a quarter of the budget; 0: no share
	// (the budget still holds).
	MaxDescriptorsPerIP *int `toml:"max_descriptors_per_ip,omitempty,omitzero"`

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
	// is bridged to the backend as an HTTP/1.1 Upgrade. nil means false:
	// nothing is advertised and browsers open an HTTP/1.1 connection per
	// WebSocket, as behind nginx. Off by default because Go's HTTP/2
	// server hands every DATA frame between goroutines: a tunnel's
	// messages cost about twice the CPU of HTTP/1.1's at ordinary rates,
	// and the TLS handshake a stream saves is repaid within a few dozen
	// messages (docs/performance.md#websockets-over-http2). Go 1.27 turns extended CONNECT on for the whole
	// process only (GODEBUG=http2xconnect=1 at start, which wssproxy's main
	// sets for itself), so a change applies at the next start.
	HTTP2WebSockets *bool `toml:"http2_websockets,omitempty,omitzero"`

	// H2MaxStreams is how many streams one HTTP/2 connection may have
	// open at once (SETTINGS_MAX_CONCURRENT_STREAMS): its WebSockets and
	// page requests together, as a browser puts all of a site's on one
	// connection, even across tabs. Browsers do not go over it: they
	// queue what is over it on their side, with no error, so a page with
	// as many WebSockets open waits for any further request. The first
	// time a connection reaches it the proxy logs a warning; streams a
	// client opens over it anyway are refused (RST_STREAM) and counted.
	// What one connection can make the proxy buffer does not grow with it
	// (a connection-wide receive window). Default 1000; it applies at the
	// next start.
	H2MaxStreams int `toml:"h2_max_streams,omitempty,omitzero"`

	// Routes map request paths (and optionally hosts) to backends.
	Routes []Route `toml:"route,omitempty,omitzero"`

	// HSTS, when set, is the Strict-Transport-Security value sent on every
	// response to a request that came over TLS: the proxy's own, static
	// files, and backends' (whose own header it replaces), but not a
	// WebSocket's 101, which is the backend's. Never over plain HTTP (RFC
	// 6797 §7.2). Compile checks it (checkHSTS) and reports it as
	// tls.hsts: it is not a key of its own, wssproxy takes it from [tls]
	// hsts.
	HSTS string `toml:"-"`
}

// H2WebSockets reports whether c carries WebSockets over HTTP/2
// (http2_websockets = true; off by default).
func (c *Config) H2WebSockets() bool { return c.HTTP2WebSockets != nil && *c.HTTP2WebSockets }

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

	// SendTimeout is how long one write to either peer (one read's worth
	// of bytes, up to 64 KiB) may take: a peer that has not taken it in
	// that time has stopped reading, or reads slower than about 1 KB/s at
	// the default. It is dropped and the other side gets a close frame
	// (1014 to the client, 1001 to the backend). It bounds the proxy's own
	// pings and close frames too. Like nginx's proxy_send_timeout, but on
	// a write rather than on the gap between two. Default 60s.
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

	// Message-rate limits on what a client sends (ratelimit.go). Each is
	// off at 0. MessageRate is messages a second per tunnel, with
	// MessageBurst at once (default: one second's worth); ByteRate is
	// payload bytes a second per tunnel, with ByteBurst (default: one
	// second's worth); MessageRatePerIP bounds the messages a second of
	// all of one client address's tunnels on the route together (burst:
	// MessageBurst, else one second's worth). Over a limit,
	// RateLimitAction "throttle" (the default) stops reading that client
	// until the limit allows (TCP backpressure: nothing is lost or
	// reordered); "close" closes the tunnel with 1008 both ways.
	MessageRate      float64 `toml:"message_rate,omitempty,omitzero"`
	MessageBurst     int     `toml:"message_burst,omitempty,omitzero"`
	ByteRate         float64 `toml:"byte_rate,omitempty,omitzero"`
	ByteBurst        int     `toml:"byte_burst,omitempty,omitzero"`
	MessageRatePerIP float64 `toml:"message_rate_per_ip,omitempty,omitzero"`
	RateLimitAction  string  `toml:"rate_limit_action,omitempty,omitzero"`

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

	// Who may use the route (auth.go): every key below that is set must
	// pass, for WebSocket handshakes and plain requests alike, before a
	// backend is dialed.

	// ForwardAuth asks an auth service first: a GET to this URL (http,
	// https, or http+unix:///path/to.sock) with the client's headers. A
	// 2xx lets the request on; any other answer is the client's.
	ForwardAuth string `toml:"forward_auth,omitempty,omitzero"`

	// ForwardAuthHeaders are the auth service's response headers set on
	// the request to the backend (a client's own copies are removed).
	ForwardAuthHeaders []string `toml:"forward_auth_headers,omitempty,omitzero"`

	// ForwardAuthTimeout bounds the auth service's answer (504 past it).
	// Default 5s.
	ForwardAuthTimeout time.Duration `toml:"forward_auth_timeout,omitempty,omitzero"`

	// JWT requires a signed JSON Web Token ([route.jwt]).
	JWT *JWT `toml:"jwt,omitempty,omitzero"`

	// BasicAuth is an htpasswd file of bcrypt entries (htpasswd -B).
	BasicAuth string `toml:"basic_auth,omitempty,omitzero"`

	// ClientCert is "require" (403 without a certificate that tls.client_ca
	// verifies) or "optional" (its identity goes to the backend if given).
	ClientCert string `toml:"client_cert,omitempty,omitzero"`
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
	def(&c.UpgradeDrain, DefaultUpgradeDrain)
	if c.CloseSpread == nil {
		d := c.ShutdownTimeout / 3
		c.CloseSpread = &d
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxClientConnections == 0 {
		c.MaxClientConnections = defaultMaxClientConnections()
	}
	if c.MaxDescriptorsPerIP == nil {
		n := defaultDescriptorsPerIP()
		c.MaxDescriptorsPerIP = &n
	}
	if c.H2MaxStreams == 0 {
		c.H2MaxStreams = DefaultH2MaxStreams
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
		def(&r.ForwardAuthTimeout, DefaultForwardAuthTimeout)
	}
	return c
}

// Entries are the route's backends as written: Backend alone, or
// Backends; none for a static or handler route.
func (r *Route) Entries() []string {
	if r.Backend != "" {
		return []string{r.Backend}
	}
	return r.Backends
}
