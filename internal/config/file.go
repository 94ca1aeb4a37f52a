// Package config is wssproxy's configuration format: the TOML file, the
// command line's flags that override it and their WSSPROXY_ environment
// variables, defaults, relative paths, and -print-config. It reports every
// problem as a FieldError with file, line and key: its own (syntax, types,
// unknown keys) and, placed in the file, those of the step that compiles
// the configuration into running state (proxy.Compile, tlsconf.Compile and
// the process's own keys), which is the only validator.
package config

import (
	"path/filepath"

	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// FieldError is a problem with one key, placed in its file and line; the
// same type as proxy.FieldError and tlsconf.FieldError.
type FieldError = fielderr.FieldError

// File is the TOML file. The proxy's keys are proxy.Config's, at the top
// level; this adds what belongs to the process: listeners, TLS, logs.
type File struct {
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

	TLS      tlsconf.Config `toml:"tls,omitempty,omitzero"`
	Redirect Redirect       `toml:"redirect,omitempty,omitzero"`
	Admin    Admin          `toml:"admin"` // printed even when off, so "" survives

	proxy.Config
}

// Redirect is the [redirect] section.
type Redirect struct {
	// Listen, when set, serves a 308 redirect to https for every request,
	// and ACME HTTP-01 challenges. Port 80 for HTTP-01.
	Listen string `toml:"listen,omitempty,omitzero"`
}

// Admin is the [admin] section.
type Admin struct {
	// Listen is the admin address: /metrics, /healthz, /readyz and a
	// status page. Default 127.0.0.1:9090; "" turns it off.
	Listen string `toml:"listen"`
	// AllowRemote permits a non-loopback Listen. The endpoints show routes
	// and backends: keep them behind a firewall.
	AllowRemote bool `toml:"allow_remote,omitempty,omitzero"`
	// BasicAuth is an htpasswd file (bcrypt entries, htpasswd -B): every
	// endpoint but /healthz asks for one of its users, and Listen may then
	// be beyond loopback. Its contents are read again at each reload.
	BasicAuth string `toml:"basic_auth,omitempty,omitzero"`
}

// Defaults of the process's keys.
const (
	DefaultListen = ":8443"
	// DefaultAdmin is loopback only, so nothing but this machine sees it.
	DefaultAdmin = "127.0.0.1:9090"
	// DefaultBackend is the embedded default's backend: where Workerman,
	// GatewayWorker and most ws servers in the seeds' FAQ listen.
	DefaultBackend = "127.0.0.1:8282"
)

// Default is what wssproxy runs with no file: the seeds' nginx block.
func Default() *File {
	return &File{
		Config: proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: "ws://" + DefaultBackend}}},
		Admin:  Admin{Listen: DefaultAdmin},
	}
}

// DemoRoutes are the routes of -demo, whose echo backend listens on addr:
// WebSockets on /wss, its test page on /.
func DemoRoutes(addr string) []proxy.Route {
	return []proxy.Route{
		{Path: "/wss", Backend: "ws://" + addr},
		{Path: "/", Backend: "http://" + addr},
	}
}

// paths lists the keys that name files or directories, with their keys.
// A relative one in the file is taken against the file's directory.
func (f *File) paths() map[string]*string {
	ps := map[string]*string{
		"log_file": &f.LogFile, "pid_file": &f.PidFile,
		"tls.cert": &f.TLS.Cert, "tls.key": &f.TLS.Key,
		"tls.acme.cache_dir": &f.TLS.ACME.CacheDir, "tls.acme.ca_roots": &f.TLS.ACME.CARoots,
		"tls.client_ca": &f.TLS.ClientCA, "admin.basic_auth": &f.Admin.BasicAuth,
	}
	for i := range f.TLS.Certificates {
		c := &f.TLS.Certificates[i]
		ps[indexKey("tls.certificate", i)+".cert"] = &c.Cert
		ps[indexKey("tls.certificate", i)+".key"] = &c.Key
	}
	for i := range f.Routes {
		r := &f.Routes[i]
		k := indexKey("route", i)
		ps[k+".backend_ca"], ps[k+".static"], ps[k+".socket"] = &r.BackendCA, &r.Static, &r.Socket
		ps[k+".basic_auth"] = &r.BasicAuth
		if r.JWT != nil {
			ps[k+".jwt.key_file"] = &r.JWT.KeyFile
		}
	}
	return ps
}

// resolvePaths makes every relative path in f relative to dir.
func (f *File) resolvePaths(dir string) {
	for _, p := range f.paths() {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}
