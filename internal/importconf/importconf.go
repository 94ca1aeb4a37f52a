package importconf

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Note is one thing the translation changed or dropped, where it was
// written.
type Note struct {
	File string
	Line int
	Text string

	order int // of File among the files read
}

func (n Note) String() string {
	if n.Line == 0 {
		return n.File + ": " + n.Text
	}
	return fmt.Sprintf("%s:%d: %s", n.File, n.Line, n.Text)
}

// Result is one translated configuration.
type Result struct {
	// Dialect is "nginx" or "apache".
	Dialect string
	// TOML is the wssproxy configuration.
	TOML []byte
	// Notes are what changed or was dropped, in the order of the files.
	Notes []Note
	// Routes counts the [[route]] tables: 0 means nothing routable.
	Routes int
	// Files are to be written beside the configuration (full certificate
	// chains), by name relative to its folder. Only with Options.OutDir.
	Files []OutFile
}

// OutFile is a file the configuration refers to and the caller writes.
type OutFile struct {
	Name string
	Data []byte
}

// Options adjust Import. The zero value writes no files.
type Options struct {
	// OutDir is the folder the configuration will be written to. When
	// set, a certificate that Apache gives in two files (certificate and
	// SSLCertificateChainFile) is joined into one full-chain file there,
	// returned in Result.Files and named by the configuration.
	OutDir string
}

// ErrNothingRoutable is returned with a Result that has no routes.
var ErrNothingRoutable = errors.New("importconf: nothing routable found")

// Import reads path (nginx or httpd syntax, detected) and its includes.
// A syntax error is a *SyntaxError naming the file and line; so is input
// beyond one of the import's bounds met inside a file, the bound named.
func Import(path string, opts Options) (*Result, error) {
	e := &expander{top: path}
	data, err := e.read(path)
	if err != nil {
		return nil, err
	}
	t := newTranslation(dialect(data), path, opts)
	e.note, t.read = t.note, e.read
	switch t.dialect {
	case "nginx":
		e.parse = parseNginx
		e.isInc = func(name string) bool { return name == "include" }
	case "apache":
		e.parse = func(file string, data []byte, limit int) ([]*node, error) {
			return parseApache(file, data, limit, func(n *node, comment string) {
				t.note(n, "%q read as a comment: httpd allows # only at the start of a line and would refuse this line", comment)
			})
		}
		e.isInc = func(name string) bool {
			return strings.EqualFold(name, "Include") || strings.EqualFold(name, "IncludeOptional")
		}
	default:
		return nil, fmt.Errorf("%s: cannot tell whether this is nginx or Apache httpd configuration", path)
	}
	abs, _ := filepath.Abs(path)
	nodes, err := e.parsed(path, abs, data)
	if err != nil {
		return nil, err
	}
	return t.translate(nodes)
}

func newTranslation(dialect, path string, opts Options) *translation {
	t := &translation{opts: opts, dialect: dialect, fileOrder: map[string]int{path: 0}}
	t.cfg.source = filepath.Base(path)
	return t
}

// translate makes the Result of parsed, expanded directives.
func (t *translation) translate(nodes []*node) (*Result, error) {
	if t.dialect == "nginx" {
		t.nginx(nodes)
	} else {
		t.apache(nodes)
	}
	if t.err != nil {
		return nil, t.err
	}
	res := &Result{Dialect: t.dialect, TOML: t.cfg.toml(), Routes: len(t.cfg.routes), Files: t.files}
	slices.SortStableFunc(t.notes, func(a, b Note) int {
		if d := a.order - b.order; d != 0 {
			return d
		}
		return a.Line - b.Line
	})
	res.Notes = t.notes
	if res.Routes == 0 {
		return res, ErrNothingRoutable
	}
	return res, nil
}

// translation is the state of one Import.
type translation struct {
	opts      Options
	dialect   string
	cfg       config
	notes     []Note
	fileOrder map[string]int
	files     []OutFile
	read      func(path string) ([]byte, error) // within the import's bounds
	chains    map[[2]string]string              // certificate and chain file → the full chain's name
	outNames  map[string]bool                   // the full chains' names
	err       error                             // the first error: the translation stops at it
	settings  int                               // inherited settings read by routes, against maxSettings

	// nginx
	used         map[*node]bool
	scopeNodes   []*node
	upstreams    map[string]*upstream
	upstreamList []*upstream
	zones        map[string]string // limit_conn_zone name → key
	realIPFrom   []*node
	realIPHeader *node
	authURLs     map[string]string // auth_request's location → its forward_auth URL, this server's
	authLocs     map[*node]bool    // those locations: not routes
}

func (t *translation) order(file string) int {
	if i, ok := t.fileOrder[file]; ok {
		return i
	}
	t.fileOrder[file] = len(t.fileOrder)
	return t.fileOrder[file]
}

// note records a message about n, once per directive.
func (t *translation) note(n *node, format string, args ...any) {
	t.notes = append(t.notes, Note{n.file, n.line, fmt.Sprintf(format, args...), t.order(n.file)})
}

// noteOnce notes n only the first time: an inherited directive is read
// for every location under it, but reported once.
func (t *translation) noteOnce(n *node, format string, args ...any) {
	if slices.Contains(n.noted, format) {
		return
	}
	n.noted = append(n.noted, format)
	t.note(n, format, args...)
}

func (t *translation) dropped(n *node, why string) { t.noteOnce(n, "%s dropped: %s", n.text(), why) }
func (t *translation) builtIn(n *node, why string) { t.noteOnce(n, "%s: built in: %s", n.text(), why) }

// fail records the first error of the translation, at n.
func (t *translation) fail(n *node, format string, args ...any) {
	if t.err == nil {
		t.err = &SyntaxError{n.file, n.line, fmt.Sprintf(format, args...)}
	}
}

// spend counts inherited settings read for routes at n, and fails the
// translation when they pass maxSettings: a server's proxy_set_header
// lines are read by each of its locations, and a million of each would
// take hours and gigabytes. It reports whether the translation goes on.
func (t *translation) spend(n *node, settings int) bool {
	if t.settings += settings; t.settings > maxSettings && t.err == nil {
		t.fail(n, "%s: the routes read more than %d inherited settings (each location reads every proxy_set_header, limit_conn or RequestHeader around it): the import's limit", n.text(), maxSettings)
	}
	return t.err == nil
}

// addRoutes adds a copy of r for each host, unless that host has r's path
// already: then, with dupNote, the directive at n is noted as dropped.
// It reports false when the translation has met a bound and must stop.
func (t *translation) addRoutes(n *node, r *route, hosts []string, dupNote bool) bool {
	for _, h := range hosts {
		if !t.spend(n, 1) {
			return false
		}
		if t.cfg.hasRoute(h, r.path) {
			if dupNote {
				t.noteOnce(n, "%s dropped: the same path on the same host is a route already", n.text())
			}
			continue
		}
		if len(t.cfg.routes) >= maxRoutes {
			t.fail(n, "%s: more than %d routes (every host name of a server times its locations): the import's limit", n.text(), maxRoutes)
			return false
		}
		rr := *r
		rr.host = h
		t.cfg.addRoute(&rr)
	}
	return true
}

// config is the wssproxy configuration being built.
type config struct {
	source string // the imported file's name, for the header

	listen            string
	tlsCert, tlsKey   string
	certs             [][2]string
	minVersion        string
	hsts              string
	redirect          string
	trustedProxies    uniq
	realIPHeader      string
	proxyProtocol     bool
	proxyProtocolFrom []string
	proxyProtocolTODO bool // the listener takes PROXY headers but from whom is unknown
	maxConnsPerIP     int
	maxConns          int
	dialTimeout       string
	routes            []*route
	routeKeys         map[[2]string]bool // lower-case host and path of each route
	certFiles         map[string]bool    // the certificates of tlsCert and certs
}

// route is one [[route]].
type route struct {
	from               string // "nginx.conf:14: location /wss", a comment above it
	path               string
	host               string
	backend            string
	backends           []string
	balance            string
	maxFails           *int
	failTimeout        string
	static             string
	stripPrefix        bool
	setHeaders         [][2]string
	removeHeaders      []string
	idleTimeout        string
	sendTimeout        string
	backendCA          string
	backendName        string
	forwardAuth        string
	forwardAuthHeaders []string
}

func (c *config) addCert(cert, key string) {
	if cert == "" || c.certFiles[cert] {
		return
	}
	if c.certFiles == nil {
		c.certFiles = map[string]bool{}
	}
	c.certFiles[cert] = true
	if c.tlsCert == "" {
		c.tlsCert, c.tlsKey = cert, key
		return
	}
	c.certs = append(c.certs, [2]string{cert, key})
}

// addRoute adds r, which hasRoute then finds.
func (c *config) addRoute(r *route) {
	if c.routeKeys == nil {
		c.routeKeys = map[[2]string]bool{}
	}
	c.routeKeys[[2]string{strings.ToLower(r.host), r.path}] = true
	c.routes = append(c.routes, r)
}

// hasRoute reports whether a route for host and path exists already: a
// map, not a search, so that 100,000 locations take a moment, not minutes.
func (c *config) hasRoute(host, path string) bool {
	return c.routeKeys[[2]string{strings.ToLower(host), path}]
}

// uniq is a list without repeats, in the order first added, in time
// linear in its length.
type uniq struct {
	list []string
	seen map[string]bool
}

func (u *uniq) add(v ...string) {
	for _, x := range v {
		if u.seen[x] {
			continue
		}
		if u.seen == nil {
			u.seen = map[string]bool{}
		}
		u.seen[x] = true
		u.list = append(u.list, x)
	}
}
