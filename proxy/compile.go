package proxy

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/internal/certpool"
	"github.com/wssproxy/wssproxy/internal/fielderr"
)

// FieldError is a problem with one configuration key; Compile, New and
// Reload report every problem as one, joined. Key names the key as it is
// written in the file, with 1-based indexes for arrays of tables:
// "route[2].backend". File and Line are left for the caller that knows
// the file (wssproxy's loader) to fill in.
type FieldError = fielderr.FieldError

func fieldErr(key, format string, args ...any) error {
	return fielderr.Errorf(key, format, args...)
}

// Compiled is a Config made ready to serve: defaults applied, every key
// parsed and checked, every file it names read. Compile is the only way to
// make one, and so the only validator of a Config: New and Reload compile
// theirs, and wssproxy -t compiles and throws the result away. Nothing is
// parsed again when a Compiled is served.
type Compiled struct {
	cfg       Config // with defaults
	routes    []*routePlan
	trusted   prefixes // trusted_proxies
	proxyFrom prefixes // proxy_protocol_from
}

// routePlan is one route compiled: everything a serving route needs but
// what belongs to a Server (its backends, counts, metrics and handler).
type routePlan struct {
	route
	src      *Route         // with defaults
	ups      []upstreamPlan // backend or backends, parsed
	roots    *x509.CertPool // backend_ca; nil: the system's roots
	rootsSum [sha256.Size]byte
}

// upstreamPlan is one backends entry, parsed.
type upstreamPlan struct {
	name   string // the URL as written, for logs
	url    *url.URL
	weight int
}

// Compile checks cfg and compiles it. The error joins a *FieldError for
// every problem, each naming its key; with an error, the Compiled is nil.
// backend_ca files are read and static directories looked at here, once:
// serving the result does not read them again.
func Compile(cfg Config) (*Compiled, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkDuration("handshake_timeout", cfg.HandshakeTimeout))
	add(checkDuration("dial_timeout", cfg.DialTimeout))
	add(checkDuration("read_header_timeout", cfg.ReadHeaderTimeout))
	add(checkDuration("shutdown_timeout", cfg.ShutdownTimeout))
	add(checkDuration("upgrade_drain", cfg.UpgradeDrain))
	if cfg.CloseSpread != nil {
		if err := checkDuration("close_spread", *cfg.CloseSpread); err != nil {
			add(err)
		} else if limit := cmp.Or(cfg.ShutdownTimeout, DefaultShutdownTimeout); *cfg.CloseSpread >= limit {
			add(fieldErr("close_spread", "%v is not shorter than shutdown_timeout (%v): the last tunnels would be cut off, not closed", *cfg.CloseSpread, limit))
		}
	}
	if cfg.MaxHeaderBytes < 0 || (cfg.MaxHeaderBytes > 0 && cfg.MaxHeaderBytes < 1024) {
		add(fieldErr("max_header_bytes", "must be at least 1024, got %d", cfg.MaxHeaderBytes))
	}
	for _, x := range []struct {
		key string
		n   int
	}{{"max_connections", cfg.MaxConnections}, {"max_connections_per_ip", cfg.MaxConnectionsPerIP},
		{"max_client_connections", cfg.MaxClientConnections}, {"handshake_burst_per_ip", cfg.HandshakeBurstPerIP},
		{"h2_max_streams", cfg.H2MaxStreams}} {
		if x.n < 0 {
			add(fieldErr(x.key, "must not be negative, got %d", x.n))
		}
	}
	if cfg.MaxDescriptorsPerIP != nil && *cfg.MaxDescriptorsPerIP < 0 {
		add(fieldErr("max_descriptors_per_ip", "must not be negative, got %d", *cfg.MaxDescriptorsPerIP))
	}
	c := &Compiled{cfg: cfg.withDefaults()}
	var err error
	if c.trusted, err = parsePrefixes(cfg.TrustedProxies); err != nil {
		add(fielderr.Wrap("trusted_proxies", err))
	}
	if c.proxyFrom, err = parsePrefixes(cfg.ProxyProtocolFrom); err != nil {
		add(fielderr.Wrap("proxy_protocol_from", err))
	}
	if cfg.ProxyProtocol && len(cfg.ProxyProtocolFrom) == 0 {
		add(fieldErr("proxy_protocol_from", "missing: list the load balancers that send PROXY headers; a header from anyone else is refused"))
	}
	if cfg.RealIPHeader != "" {
		if err := checkHeaderName(cfg.RealIPHeader); err != nil {
			add(fielderr.Wrap("real_ip_header", err))
		}
	}
	if cfg.HSTS != "" {
		if err := checkHSTS(cfg.HSTS); err != nil {
			add(fielderr.Wrap("tls.hsts", err))
		}
	}
	if cfg.HandshakeRatePerIP < 0 {
		add(fieldErr("handshake_rate_per_ip", "must not be negative, got %v", cfg.HandshakeRatePerIP))
	}
	if len(cfg.Routes) == 0 {
		add(fieldErr("route", "no routes: add a [[route]] with a path and a backend"))
	}
	seen := make(map[string]int)
	for i := range c.cfg.Routes {
		key := fmt.Sprintf("route[%d]", i+1)
		p, rerrs := compileRoute(key, i, &cfg.Routes[i], &c.cfg.Routes[i])
		errs = append(errs, rerrs...)
		if p == nil {
			continue
		}
		c.routes = append(c.routes, p)
		id := fmt.Sprintf("%s %v %s", p.host+p.hostSuffix, p.exact, p.prefix)
		if j, dup := seen[id]; dup {
			add(fieldErr(key+".path", "%q on host %q is already route[%d]", p.src.Path, p.src.Host, j))
		}
		seen[id] = i + 1
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The identity headers any route's auth sets are the proxy's on every
	// route: a client must not reach, through a route without that auth, a
	// backend that trusts them from another route.
	var identity []string
	for _, p := range c.routes {
		if p.auth != nil {
			for _, h := range p.auth.strip {
				if !slices.Contains(identity, h) {
					identity = append(identity, h)
				}
			}
		}
	}
	for _, p := range c.routes {
		p.identity = identity
	}
	return c, nil
}

// compileRoute checks and compiles route i, whose key is key: raw as
// configured, r with defaults. The plan is nil when the path does not
// compile; the errors are every problem found.
func compileRoute(key string, i int, raw, r *Route) (*routePlan, []error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	prefix, exact, err := r.pattern()
	if err != nil {
		add(fielderr.Wrap(key+".path", err))
	}
	if r.Host != "" {
		if err := checkHost(r.Host); err != nil {
			add(fielderr.Wrap(key+".host", err))
		}
	}
	p := &routePlan{src: r, route: route{
		name:             fmt.Sprintf("route[%d] %s", i+1, r.Path),
		prefix:           prefix,
		exact:            exact,
		stripPath:        r.StripPrefix,
		handshakeTimeout: r.HandshakeTimeout,
		setHeaders:       make(http.Header),

		pingTimeout:         r.PingTimeout,
		backendPingInterval: r.BackendPingInterval,
		sendTimeout:         r.SendTimeout,
		idleTimeout:         r.IdleTimeout,
		maxLifetime:         r.MaxLifetime,
		maxMessageSize:      r.MaxMessageSize,
		requireOrigin:       r.RequireOrigin,
		forwarded:           r.Forwarded,
		underscores:         r.UnderscoresInHeaders,
	}}
	if r.PingInterval != nil {
		p.pingInterval = *r.PingInterval
	}
	if h := strings.ToLower(r.Host); strings.HasPrefix(h, "*.") {
		p.hostSuffix = h[1:]
	} else {
		p.host = h
	}

	targets := 0
	for _, set := range []bool{len(r.Entries()) > 0, r.Static != "", r.Handler != nil} {
		if set {
			targets++
		}
	}
	switch {
	case targets == 0:
		add(fieldErr(key+".backend", "missing: a route needs a backend (or backends, or static)"))
	case targets > 1:
		add(fieldErr(key+".backend", "a route has one of backend, backends and static"))
	case r.Backend != "" && len(r.Backends) > 0:
		add(fieldErr(key+".backends", "a route has backend or backends, not both"))
	}
	entryKey := key + ".backends"
	if r.Backend != "" {
		entryKey = key + ".backend"
	}
	paths := map[string]bool{}
	for _, e := range r.Entries() {
		u, weight, err := parseUpstream(e)
		if err != nil {
			add(fielderr.Wrap(entryKey, err))
			continue
		}
		p.ups = append(p.ups, upstreamPlan{name: strings.Fields(e)[0], url: u, weight: weight})
		if strings.HasSuffix(u.Scheme, "+unix") {
			if r.Socket != "" {
				add(fieldErr(key+".socket", "%q already names its socket", e))
			}
			paths[""] = true
			continue
		}
		paths[u.Path] = true
		if r.StripPrefix && u.Path != "" {
			add(fieldErr(key+".strip_prefix", "has no effect: backend %q has a path, which already replaces the prefix", e))
		}
	}
	if len(paths) > 1 {
		add(fieldErr(entryKey, "backends of one route must share one path (the path replaces the route's prefix)"))
	} else if len(p.ups) > 0 {
		if u := p.ups[0].url; !strings.HasSuffix(u.Scheme, "+unix") && u.Path != "" {
			p.stripPath, p.backendPath = true, u.Path
		}
	}
	switch r.Balance {
	case "", balanceRoundRobin, balanceLeastConn, balanceIPHash:
	default:
		add(fieldErr(key+".balance", `must be "round_robin", "least_conn" or "ip_hash", got %q`, r.Balance))
	}
	for _, x := range []struct {
		k string
		n *int
	}{{".max_retries", r.MaxRetries}, {".max_fails", r.MaxFails}} {
		if x.n != nil && *x.n < 0 {
			add(fieldErr(key+x.k, "must not be negative, got %d", *x.n))
		}
	}
	if r.UnhealthyThreshold < 0 || r.HealthyThreshold < 0 {
		add(fieldErr(key+".unhealthy_threshold", "thresholds must not be negative"))
	}
	add(checkDuration(key+".fail_timeout", raw.FailTimeout))
	add(checkDuration(key+".health_interval", raw.HealthInterval))
	add(checkDuration(key+".health_timeout", raw.HealthTimeout))
	if r.HealthPath != "" && !strings.HasPrefix(r.HealthPath, "/") {
		add(fieldErr(key+".health_path", "must start with /, got %q", r.HealthPath))
	}
	if r.BackendCA != "" {
		roots, data, err := certpool.ReadFile(r.BackendCA)
		if err != nil {
			add(fielderr.Wrap(key+".backend_ca", err))
		}
		p.roots, p.rootsSum = roots, sha256.Sum256(data)
	}
	var aerrs []error
	p.auth, aerrs = compileAuth(key, r, p.roots)
	errs = append(errs, aerrs...)
	if r.Static != "" {
		if fi, err := os.Stat(r.Static); err != nil {
			add(fielderr.Wrap(key+".static", err))
		} else if !fi.IsDir() {
			add(fieldErr(key+".static", "%q is not a directory", r.Static))
		}
	}
	for name, v := range r.SetHeaders {
		if err := checkHeaderName(name); err != nil {
			add(fielderr.Wrap(key+".set_headers", err))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			add(fieldErr(key+".set_headers", "value of %q contains a line break or NUL", name))
		}
		if isHopByHop(http.CanonicalHeaderKey(name)) {
			add(fieldErr(key+".set_headers", "%q is a hop-by-hop header the proxy manages", name))
		}
		p.setHeaders[http.CanonicalHeaderKey(name)] = []string{v}
	}
	for _, name := range r.RemoveHeaders {
		if err := checkHeaderName(name); err != nil {
			add(fielderr.Wrap(key+".remove_headers", err))
		}
		p.removeHeaders = append(p.removeHeaders, http.CanonicalHeaderKey(name))
	}
	add(checkDuration(key+".handshake_timeout", raw.HandshakeTimeout))
	if raw.PingInterval != nil {
		add(checkDuration(key+".ping_interval", *raw.PingInterval))
	}
	add(checkDuration(key+".ping_timeout", raw.PingTimeout))
	add(checkDuration(key+".backend_ping_interval", raw.BackendPingInterval))
	add(checkDuration(key+".send_timeout", raw.SendTimeout))
	add(checkDuration(key+".idle_timeout", raw.IdleTimeout))
	add(checkDuration(key+".max_lifetime", raw.MaxLifetime))
	for _, o := range r.AllowedOrigins {
		op, err := parseOrigin(o)
		if err != nil {
			add(fielderr.Wrap(key+".allowed_origins", err))
			continue
		}
		p.origins = append(p.origins, op)
	}
	switch r.SendProxyProtocol {
	case "":
	case "v1":
		p.sendProxy = 1
	case "v2":
		p.sendProxy = 2
	default:
		add(fieldErr(key+".send_proxy_protocol", `must be "v1" or "v2", got %q`, r.SendProxyProtocol))
	}
	if r.MaxMessageSize < 0 {
		add(fieldErr(key+".max_message_size", "must not be negative, got %d", r.MaxMessageSize))
	}
	p.limits = compileLimits(key, r, add) // ratelimit.go
	if prefix == "" {
		return nil, errs // nothing can be matched to it
	}
	return p, errs
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
