package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// fileConfig is the TOML file. The proxy's keys are proxy.Config's, at the
// top level; this adds what belongs to the process: listeners, TLS, logs.
type fileConfig struct {
	// Listen is the TLS listener's address. Default ":8443".
	Listen string `toml:"listen,omitempty,omitzero"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level,omitempty,omitzero"`
	// LogFormat is "text" (the default: key=value) or "json".
	LogFormat string `toml:"log_format,omitempty,omitzero"`
	// LogFile, when set, receives the logs instead of stderr; SIGUSR1
	// reopens it (for logrotate).
	LogFile string `toml:"log_file,omitempty,omitzero"`
	// PidFile, when set, gets the process ID while it runs, for -s.
	PidFile string `toml:"pid_file,omitempty,omitzero"`

	TLS      tlsconf.Config  `toml:"tls,omitempty,omitzero"`
	Redirect redirectSection `toml:"redirect,omitempty,omitzero"`
	Admin    adminSection    `toml:"admin"` // printed even when off, so "" survives

	proxy.Config

	// Route shadows proxy.Config.Routes so that each [[route]] is decoded
	// on its own and its errors can name its index.
	Route []toml.Primitive `toml:"route,omitempty,omitzero"`
}

type redirectSection struct {
	// Listen, when set, serves a 308 redirect to https for every request,
	// and ACME HTTP-01 challenges. Port 80 for HTTP-01.
	Listen string `toml:"listen,omitempty,omitzero"`
}

const defaultListen = ":8443"

// configError is every problem found in one configuration file, each line
// naming the file, the line where one is known, and the key.
type configError struct{ lines []string }

func (e *configError) Error() string { return strings.Join(e.lines, "\n") }

// loadConfig reads, decodes and validates a configuration file. Nothing is
// started; certificate files are read and checked.
func loadConfig(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data)
}

// loadConfigUnchecked reads and decodes a file whose values flags will
// override: only syntax, types and unknown keys are checked here; the
// merged result is validated by the caller.
func loadConfigUnchecked(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return decodeConfig(path, data, false)
}

// typeErr matches toml's decode errors that are not ParseErrors.
var typeErr = regexp.MustCompile(`^toml: (?:line \d+ )?\(last key "([^"]*)"\): (.*)$`)

func parseConfig(path string, data []byte) (*fileConfig, error) {
	return decodeConfig(path, data, true)
}

func decodeConfig(path string, data []byte, validate bool) (*fileConfig, error) {
	lines := keyLines(string(data))
	ce := &configError{}
	add := func(key string, line int, msg string) {
		switch {
		case key == "" && line > 0:
			ce.lines = append(ce.lines, fmt.Sprintf("%s:%d: %s", path, line, msg))
		case line > 0:
			ce.lines = append(ce.lines, fmt.Sprintf("%s:%d: %s: %s", path, line, key, msg))
		case key != "":
			ce.lines = append(ce.lines, fmt.Sprintf("%s: %s: %s", path, key, msg))
		default:
			ce.lines = append(ce.lines, fmt.Sprintf("%s: %s", path, msg))
		}
	}
	addErr := func(prefix string, err error) {
		var pe toml.ParseError
		switch {
		case errors.As(err, &pe):
			add("", pe.Position.Line, pe.Message)
		case typeErr.MatchString(err.Error()):
			m := typeErr.FindStringSubmatch(err.Error())
			key := m[1]
			if prefix != "" {
				key = prefix + strings.TrimPrefix(key, "route")
			}
			add(key, lines.find(key), m[2])
		default:
			add(prefix, lines.find(prefix), err.Error())
		}
	}

	var fc fileConfig
	md, err := toml.Decode(string(data), &fc)
	if err != nil {
		addErr("", err)
		return nil, ce
	}
	for i, p := range fc.Route {
		var r proxy.Route
		if err := md.PrimitiveDecode(p, &r); err != nil {
			addErr(fmt.Sprintf("route[%d]", i+1), err)
		}
		fc.Routes = append(fc.Routes, r)
	}
	if len(ce.lines) > 0 {
		return nil, ce // values may be half-decoded: validating them would mislead
	}
	if !md.IsDefined("admin", "listen") {
		fc.Admin.Listen = defaultAdmin
	}
	for _, key := range unknownKeys(md) {
		add(key.name, lines.find(key.name), "unknown key"+key.hint)
	}
	if !validate {
		if len(ce.lines) > 0 {
			return nil, ce
		}
		return &fc, nil
	}
	for _, err := range fc.validate() {
		var fe *proxy.FieldError
		if errors.As(err, &fe) {
			add(fe.Key, lines.find(fe.Key), fe.Err.Error())
		} else {
			add("", 0, err.Error())
		}
	}
	if len(ce.lines) > 0 {
		return nil, ce
	}
	return &fc, nil
}

// validate checks the whole file: the proxy's keys and the process's.
func (fc *fileConfig) validate() []error {
	errs := flatten(fc.Config.Validate())
	if fc.Listen != "" {
		if err := checkAddr(fc.Listen); err != nil {
			errs = append(errs, &proxy.FieldError{Key: "listen", Err: err})
		}
	}
	if fc.Redirect.Listen != "" {
		if err := checkAddr(fc.Redirect.Listen); err != nil {
			errs = append(errs, &proxy.FieldError{Key: "redirect.listen", Err: err})
		}
	}
	if err := checkAdmin(fc.Admin); err != nil {
		errs = append(errs, &proxy.FieldError{Key: "admin.listen", Err: err})
	}
	switch fc.LogFormat {
	case "", "text", "json":
	default:
		errs = append(errs, &proxy.FieldError{Key: "log_format", Err: fmt.Errorf(`must be "text" or "json", got %q`, fc.LogFormat)})
	}
	if fc.LogFile != "" {
		if fi, err := os.Stat(filepath.Dir(fc.LogFile)); err != nil || !fi.IsDir() {
			errs = append(errs, &proxy.FieldError{Key: "log_file", Err: fmt.Errorf("directory %s does not exist", filepath.Dir(fc.LogFile))})
		}
	}
	if _, err := parseLevel(fc.LogLevel); err != nil {
		errs = append(errs, &proxy.FieldError{Key: "log_level", Err: err})
	}
	for _, err := range flatten(fc.TLS.Validate()) {
		var fe *tlsconf.FieldError
		if errors.As(err, &fe) {
			err = &proxy.FieldError{Key: "tls." + fe.Key, Err: fe.Err}
		}
		errs = append(errs, err)
	}
	return errs
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`must be host:port or :port, like ":443", got %q`, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

type unknownKey struct{ name, hint string }

// unknownKeys lists keys the file has and no struct field takes, with
// 1-based indexes for keys inside arrays of tables ("route[2].bakend") and
// a hint when a known key is a typo away.
func unknownKeys(md toml.MetaData) []unknownKey {
	undecoded := make(map[string]bool)
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	var out []unknownKey
	elements := make(map[string]int) // array of tables → elements so far
	for _, k := range md.Keys() {
		if md.Type(k...) == "ArrayHash" {
			elements[k.String()]++
		}
		if !undecoded[k.String()] || (len(k) > 1 && undecoded[k[:len(k)-1].String()]) {
			continue // known, or inside an unknown table reported already
		}
		var name strings.Builder
		for i := range k {
			if i > 0 {
				name.WriteByte('.')
			}
			name.WriteString(k[i])
			if n := elements[k[:i+1].String()]; n > 0 && i < len(k)-1 {
				fmt.Fprintf(&name, "[%d]", n)
			}
		}
		out = append(out, unknownKey{name.String(), suggest(k)})
	}
	return out
}

// suggest returns ` (did you mean "backend"?)` for a near miss.
func suggest(k toml.Key) string {
	t := reflect.TypeFor[fileConfig]()
	for _, part := range k[:len(k)-1] {
		f, ok := fieldByKey(t, part)
		if !ok {
			return ""
		}
		t = f
	}
	last := k[len(k)-1]
	best, bestD := "", 3
	for _, name := range keysOf(t) {
		if d := editDistance(strings.ToLower(last), name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// keysOf lists the TOML keys of a struct type, following embedded structs;
// a key the outer struct shadows is listed once.
func keysOf(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case tag == "-" || !f.IsExported():
		case f.Anonymous && tag == "":
			keys = append(keys, keysOf(f.Type)...)
		case tag != "":
			keys = append(keys, tag)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// fieldByKey is the element type behind key in struct type t.
func fieldByKey(t reflect.Type, key string) (reflect.Type, bool) {
	if key == "route" && t == reflect.TypeFor[fileConfig]() {
		return reflect.TypeFor[proxy.Route](), true
	}
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.Anonymous && tag == "" {
			if ft, ok := fieldByKey(f.Type, key); ok {
				return ft, true
			}
		}
		if tag == key {
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			return ft, ft.Kind() == reflect.Struct
		}
	}
	return nil, false
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// flatten lists the leaves of joined errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// printConfig writes fc as TOML: what -print-config shows, so a one-line
// deployment can grow into a file. Unset keys are left out (they take
// their defaults).
func printConfig(w io.Writer, fc *fileConfig) error {
	fmt.Fprintln(w, "# wssproxy configuration: the effective settings from file, flags and environment.")
	fmt.Fprintln(w, "# Keys not shown take their defaults (README: Configuration reference).")
	out := *fc
	out.Route = nil // decoding aid only; the routes are in out.Config.Routes
	return toml.NewEncoder(w).Encode(out)
}
