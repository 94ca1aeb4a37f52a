package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/proxy"
)

// Flags are the command line's part of the configuration: -config, and the
// flags that override the file's keys (or the embedded default's).
type Flags struct {
	File          string // -config; "" for the embedded default
	Listen        string
	Redirect      string // -redirect: [redirect] listen
	PidFile       string
	Routes        Routes
	Cert, Key     string
	ACME          string // comma-separated hosts
	ACMEEmail     string
	ACMEAcceptTOS bool
	// Demo, when set, is the address of -demo's echo backend, whose routes
	// (DemoRoutes) replace the configuration's.
	Demo string
	// Given holds, for each flag that was set, where: "-listen" on the
	// command line, "WSSPROXY_LISTEN" in the environment. Errors about the
	// keys a flag sets name it instead of the file.
	Given map[string]string
}

// Register defines f's flags in fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.File, "config", "", "configuration `file` (TOML); relative paths in it are taken from its directory. Without it, the embedded\ndefault: listen on :8443 with a self-signed certificate, route /wss to ws://"+DefaultBackend)
	fs.StringVar(&f.Listen, "listen", "", "TLS listen `address`, overriding the configuration's listen")
	fs.StringVar(&f.Redirect, "redirect", "", "plain-HTTP listen `address` (like :80) that answers ACME HTTP-01 challenges and redirects\neverything else to https, overriding [redirect] listen")
	fs.StringVar(&f.PidFile, "pid-file", "", "pid `file` (overrides pid_file): written while running; read by -s")
	fs.Var(&f.Routes, "route", "a route `PATH=BACKEND`, like /wss=ws://127.0.0.1:8282 (repeatable, or several separated by spaces;\nreplaces the file's routes)")
	fs.StringVar(&f.Cert, "cert", "", "certificate chain `file` (PEM, full chain), with -key")
	fs.StringVar(&f.Key, "key", "", "private key `file` (PEM) of -cert")
	fs.StringVar(&f.ACME, "acme", "", "get certificates by ACME for these `hosts` (comma-separated)")
	fs.StringVar(&f.ACMEEmail, "acme-email", "", "`email` for the ACME CA's expiry notices")
	fs.BoolVar(&f.ACMEAcceptTOS, "acme-accept-tos", false, "accept the ACME CA's terms of service (required with -acme)")
}

// Check reports flags that do not go together.
func (f *Flags) Check() error {
	switch {
	case f.Cert != "" && f.Key == "":
		return errors.New("-cert needs -key")
	case f.Key != "" && f.Cert == "":
		return errors.New("-key needs -cert")
	case f.ACME == "" && (f.ACMEEmail != "" || f.ACMEAcceptTOS):
		return errors.New("-acme-email and -acme-accept-tos go with -acme")
	case f.ACME != "" && !f.ACMEAcceptTOS:
		return errors.New("-acme needs -acme-accept-tos: it says you accept the CA's terms of service")
	}
	return nil
}

// Routes is -route, repeatable: PATH=BACKEND, or several of them
// separated by white space, which neither a path nor a backend URL can
// contain (WSSPROXY_ROUTE="/wss=ws://127.0.0.1:8282 /api=http://127.0.0.1:8080").
type Routes []proxy.Route

func (r *Routes) String() string { return "" }

// Set adds the routes in v.
func (r *Routes) Set(v string) error {
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return fmt.Errorf("want PATH=BACKEND, like /wss=ws://127.0.0.1:8282, got %q", v)
	}
	for _, f := range fields {
		path, backend, ok := strings.Cut(f, "=")
		if !ok || path == "" || backend == "" {
			return fmt.Errorf("want PATH=BACKEND, like /wss=ws://127.0.0.1:8282, got %q", f)
		}
		*r = append(*r, proxy.Route{Path: path, Backend: backend})
	}
	return nil
}

// Sources says where the configuration f loads comes from, for -t: the
// file or the embedded default, and whether flags or the environment
// change it (-config and the flags named in except do not).
func (f *Flags) Sources(except ...string) string {
	what := "embedded default configuration"
	if f.File != "" {
		what = "configuration file " + f.File
	}
	var flags, env bool
	for name, o := range f.Given {
		switch {
		case name == "config" || slices.Contains(except, name):
		case strings.HasPrefix(o, "-"):
			flags = true
		default:
			env = true
		}
	}
	switch {
	case flags && env:
		what += " with flags and environment"
	case flags:
		what += " with flags"
	case env:
		what += " with environment"
	}
	return what
}

// EnvName is the environment variable of a flag: WSSPROXY_ and its name in
// capitals, dashes as underscores (WSSPROXY_ACME_EMAIL).
func EnvName(flagName string) string {
	return "WSSPROXY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Given lists the flags set on fs's command line, as Flags.Given does.
func Given(fs *flag.FlagSet) map[string]string {
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = "-" + f.Name })
	return given
}

// SetFromEnv sets each flag of fs that given does not hold and except does
// not name from its environment variable (EnvName), and records it in
// given: the command line wins over the environment. An empty variable
// counts as unset.
func SetFromEnv(fs *flag.FlagSet, given map[string]string, except ...string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		v := os.Getenv(env)
		if v == "" || err != nil || slices.Contains(except, f.Name) {
			return // an empty variable is unset: -e WSSPROXY_LISTEN= clears an image's default
		}
		if _, set := given[f.Name]; set {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s: %w", env, serr)
		}
		given[f.Name] = env
	})
	return err
}

// Loaded is a configuration as loaded: the effective File, and what is
// needed to place an error about any of its keys at the line of the file
// that sets it, or at the flag.
type Loaded struct {
	File
	// Path is the file read; "" for the embedded default.
	Path string

	lines   keyLineIndex
	origins map[string]string // key → the flag or variable that set it
	errs    []error           // decoding's
	failed  map[string]bool   // keys whose values did not decode
	meant   map[string]bool   // keys an unknown key was a near miss of
}

// Load reads f.File (or takes the embedded default), takes its relative
// paths from its directory, and applies the flags. The error is for what
// leaves nothing to check: a file that cannot be read or is not TOML.
// Values that do not decode and unknown keys are kept for Errors, to be
// reported with the compile step's errors.
func Load(f *Flags) (*Loaded, error) {
	if f.File == "" {
		return Parse(f, nil)
	}
	data, err := os.ReadFile(f.File)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(f, data)
}

// Parse is Load with the file's contents given: data is what f.File holds
// (nil without a file), and f.File still names it in errors and gives the
// directory relative paths are taken from.
func Parse(f *Flags, data []byte) (*Loaded, error) {
	l := &Loaded{Path: f.File, origins: map[string]string{}, failed: map[string]bool{}, meant: map[string]bool{}}
	if f.File == "" {
		l.File = *Default()
	} else {
		if err := l.decode(data); err != nil {
			return nil, err
		}
		dir, err := filepath.Abs(filepath.Dir(f.File))
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		l.resolvePaths(dir)
	}
	if err := l.override(f); err != nil {
		return nil, err
	}
	l.checkSchemes()
	if l.Listen == "" {
		l.Listen = DefaultListen
	}
	// [tls] hsts is the TLS listener's, and the proxy writes the responses.
	l.Config.HSTS = l.TLS.HSTS
	// A handshake asks for a client certificate only when a route wants one.
	l.TLS.RequestClientCert = slices.ContainsFunc(l.Routes, func(r proxy.Route) bool { return r.ClientCert != "" })
	return l, nil
}

// decode parses data into l.File.
func (l *Loaded) decode(data []byte) error {
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return &FieldError{File: l.Path, Line: pe.Position.Line, Msg: pe.Message}
		}
		return fmt.Errorf("%s: %w", l.Path, err)
	}
	l.lines = keyLines(string(data))
	d := &decoder{failed: l.failed, meant: l.meant}
	d.table("", m, reflect.ValueOf(&l.File).Elem())
	l.errs = d.errs
	for _, k := range d.singles {
		// Its keys are element 1's: route[1].path is on [route]'s path line.
		l.lines.alias(k, indexKey(k, 0))
	}
	if admin, ok := m["admin"].(map[string]any); !ok || admin["listen"] == nil {
		l.Admin.Listen = DefaultAdmin
	}
	return nil
}

// override applies the flags, which win over the file.
func (l *Loaded) override(f *Flags) error {
	from := func(flagName, key string) {
		if o, ok := f.Given[flagName]; ok {
			l.origins[key] = o
		}
	}
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	var err error
	if f.Listen != "" {
		l.Listen = f.Listen
		from("listen", "listen")
	}
	if f.Redirect != "" {
		l.Redirect.Listen = f.Redirect
		from("redirect", "redirect.listen")
	}
	if f.PidFile != "" {
		if l.PidFile, err = abs(f.PidFile); err != nil {
			return err
		}
		from("pid-file", "pid_file")
	}
	if len(f.Routes) > 0 {
		l.Routes = slices.Clone(f.Routes)
		from("route", "route")
	}
	if f.Cert != "" {
		if l.TLS.Cert, err = abs(f.Cert); err != nil {
			return err
		}
		if l.TLS.Key, err = abs(f.Key); err != nil {
			return err
		}
		from("cert", "tls.cert")
		from("key", "tls.key")
	}
	if f.ACME != "" {
		l.TLS.ACME.Hosts = strings.Split(f.ACME, ",")
		l.TLS.ACME.Email = f.ACMEEmail
		l.TLS.ACME.AcceptTOS = f.ACMEAcceptTOS
		from("acme", "tls.acme.hosts")
		from("acme-email", "tls.acme.email")
		from("acme-accept-tos", "tls.acme.accept_tos")
	}
	if f.Demo != "" {
		l.Routes = DemoRoutes(f.Demo)
		l.origins["route"] = "-demo"
		if o, ok := f.Given["demo"]; ok {
			l.origins["route"] = o
		}
	}
	return nil
}

// Errors returns every problem with the configuration, or nil: the
// decoding's, and those in compiled, the error of the step that compiled
// l (whose FieldErrors name keys only). Each *FieldError is placed at the
// line of the file that sets its key (or, for a key that is missing, its
// table), or at the flag that set it, and they are sorted by line. Errors
// that follow from a value that did not decode are left out: those about
// the same key, and a "missing" one in the same [[array]] element (a
// backends of the wrong type does not also make the route lack a backend);
// so is a key's "missing" when an unknown key was a near miss of it
// (bakend for backend): one mistake, one line.
func (l *Loaded) Errors(compiled error) error {
	var out []error
	for _, e := range l.errs {
		out = append(out, l.place(e.(*FieldError)))
	}
	for _, e := range fielderr.Flatten(compiled) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			out = append(out, e)
			continue
		}
		if !l.followsFailure(fe) {
			out = append(out, l.place(fe))
		}
	}
	line := func(e error) int {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Line > 0 {
			return fe.Line
		}
		return 1 << 30 // after those with a line, in the order found
	}
	slices.SortStableFunc(out, func(a, b error) int { return line(a) - line(b) })
	return errors.Join(out...)
}

// place returns a copy of fe with its file and line.
func (l *Loaded) place(fe *FieldError) *FieldError {
	c := *fe
	if o := l.origin(c.Key); o != "" {
		c.File, c.Line = o, 0
		return &c
	}
	if l.Path != "" {
		c.File, c.Line = l.Path, l.lines.find(c.Key)
	}
	return &c
}

// origin is the flag or environment variable that set key or the table or
// array it belongs to, or "".
func (l *Loaded) origin(key string) string {
	for k := key; k != ""; k = parentKey(k) {
		if o, ok := l.origins[k]; ok {
			return o
		}
	}
	return ""
}

func (l *Loaded) followsFailure(fe *FieldError) bool {
	if l.meant[fe.Key] && strings.HasPrefix(fe.Msg, "missing") {
		return true // the unknown key that was meant to be it says so
	}
	for f := range l.failed {
		switch {
		case fe.Key == f || strings.HasPrefix(fe.Key, f+".") || strings.HasPrefix(fe.Key, f+"["):
			return true
		case strings.HasSuffix(parentKey(f), "]") && parentKey(fe.Key) == parentKey(f) && strings.HasPrefix(fe.Msg, "missing"):
			return true
		}
	}
	return false
}

// parentKey is the table or array element a key is in: "route[2]" for
// "route[2].backend", "route" for "route[2]", "" for "listen".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// Print writes f as TOML: what -print-config shows, so that a one-line
// deployment can grow into a file. Unset keys are left out (they take
// their defaults); paths are as resolved, absolute.
func Print(w io.Writer, f *File) error {
	fmt.Fprintln(w, "# wssproxy configuration: the effective settings from file, flags and environment.")
	fmt.Fprintln(w, "# Keys not shown take their defaults (docs/configuration.md: Reference).")
	return toml.NewEncoder(w).Encode(f)
}
