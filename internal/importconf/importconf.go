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
// A syntax error is a *SyntaxError naming the file and line.
func Import(path string, opts Options) (*Result, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	t := &translation{opts: opts, fileOrder: map[string]int{path: 0}}
	t.cfg.source = filepath.Base(path)
	e := &expander{top: path, note: t.note}
	switch t.dialect = dialect(data); t.dialect {
	case "nginx":
		e.parse = parseNginx
		e.isInc = func(name string) bool { return name == "include" }
	case "apache":
		e.parse = func(file string, data []byte) ([]*node, error) {
			return parseApache(file, data, func(n *node, comment string) {
				t.note(n, "%q read as a comment: httpd allows # only at the start of a line and would refuse this line", comment)
			})
		}
		e.isInc = func(name string) bool {
			return strings.EqualFold(name, "Include") || strings.EqualFold(name, "IncludeOptional")
		}
	default:
		return nil, fmt.Errorf("%s: cannot tell whether this is nginx or Apache httpd configuration", path)
	}
	nodes, err := e.file(path)
	if err != nil {
		return nil, err
	}
	if t.dialect == "nginx" {
		t.nginx(nodes)
	} else {
		t.apache(nodes)
	}
	res := &Result{Dialect: t.dialect, TOML: t.cfg.toml(), Routes: len(t.cfg.routes), Files: t.files}
	slices.SortStableFunc(t.notes, func(a, b Note) int {
		if d := t.order(a.File) - t.order(b.File); d != 0 {
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
	noted     map[noteKey]bool // by directive and message; format "": any
	fileOrder map[string]int
	files     []OutFile

	// nginx
	used         map[*node]bool
	scopeNodes   []*node
	upstreams    map[string]*upstream
	upstreamList []*upstream
	zones        map[string]string // limit_conn_zone name → key
	realIPFrom   []*node
	realIPHeader *node
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
	t.order(n.file)
	t.notes = append(t.notes, Note{n.file, n.line, fmt.Sprintf(format, args...)})
}

// noteOnce notes n only the first time: an inherited directive is read
// for every location under it, but reported once.
func (t *translation) noteOnce(n *node, format string, args ...any) {
	if t.noted == nil {
		t.noted = map[noteKey]bool{}
	}
	if t.noted[noteKey{n, format}] {
		return
	}
	t.noted[noteKey{n, format}] = true
	t.noted[noteKey{n, ""}] = true
	t.note(n, format, args...)
}

func (t *translation) dropped(n *node, why string) { t.noteOnce(n, "%s dropped: %s", n.text(), why) }
func (t *translation) builtIn(n *node, why string) { t.noteOnce(n, "%s: built in: %s", n.text(), why) }

type noteKey struct {
	n      *node
	format string
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
	trustedProxies    []string
	realIPHeader      string
	proxyProtocol     bool
	proxyProtocolFrom []string
	proxyProtocolTODO bool // the listener takes PROXY headers but from whom is unknown
	maxConnsPerIP     int
	maxConns          int
	dialTimeout       string
	routes            []*route
}

// route is one [[route]].
type route struct {
	from          string // "nginx.conf:14: location /wss", a comment above it
	path          string
	host          string
	backend       string
	backends      []string
	balance       string
	maxFails      *int
	failTimeout   string
	static        string
	stripPrefix   bool
	setHeaders    [][2]string
	removeHeaders []string
	idleTimeout   string
	sendTimeout   string
	backendCA     string
	backendName   string
}

func (c *config) addCert(cert, key string) {
	if cert == "" {
		return
	}
	if c.tlsCert == "" {
		c.tlsCert, c.tlsKey = cert, key
		return
	}
	if c.tlsCert == cert {
		return
	}
	for _, p := range c.certs {
		if p[0] == cert {
			return
		}
	}
	c.certs = append(c.certs, [2]string{cert, key})
}

// hasRoute reports whether a route for host and path exists already.
func (c *config) hasRoute(host, path string) *route {
	for _, r := range c.routes {
		if strings.EqualFold(r.host, host) && r.path == path {
			return r
		}
	}
	return nil
}

func addUnique(list []string, v ...string) []string {
	for _, x := range v {
		if !slices.Contains(list, x) {
			list = append(list, x)
		}
	}
	return list
}
