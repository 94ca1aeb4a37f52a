package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wssproxy/wssproxy/internal/config"
	"github.com/wssproxy/wssproxy/internal/fielderr"
	"github.com/wssproxy/wssproxy/internal/htpasswd"
	"github.com/wssproxy/wssproxy/internal/listenaddr"
	"github.com/wssproxy/wssproxy/proxy"
	"github.com/wssproxy/wssproxy/tlsconf"
)

// compiled is a loaded configuration compiled into what serving it needs,
// each part once: the process's own keys, TLS (tlsconf.Compile) and the
// proxy (proxy.Compile). Nothing runs yet: -t throws it away, serve and
// reload start from it.
type compiled struct {
	*config.Loaded
	level     slog.Level
	adminAuth *htpasswd.File // admin basic_auth; nil: none
	tls       *tlsconf.Compiled
	proxy     *proxy.Compiled
}

// compile compiles every part of l. Compiling is the only validation
// there is, so the error lists every problem of every part, with those
// the file's decoding found, each with file, line and key, sorted by
// line: what -t prints and what a refused reload logs, one line each.
func compile(l *config.Loaded) (*compiled, error) {
	c := &compiled{Loaded: l}
	var errs []error
	var err error
	if c.level, err = compileProcess(&l.File); err != nil {
		errs = append(errs, err)
	}
	if l.Admin.BasicAuth != "" {
		if c.adminAuth, err = htpasswd.Read(l.Admin.BasicAuth); err != nil {
			errs = append(errs, fielderr.Wrap("admin.basic_auth", err))
		}
	}
	if c.tls, err = tlsconf.Compile(l.TLS); err != nil {
		errs = append(errs, fielderr.Under("tls.", err))
	}
	if c.proxy, err = proxy.Compile(l.Config); err != nil {
		errs = append(errs, err)
	}
	for i, r := range l.Routes {
		if r.ClientCert != "" && l.TLS.ClientCA == "" {
			errs = append(errs, fielderr.Errorf(fmt.Sprintf("route[%d].client_cert", i+1), "needs tls.client_ca, the roots that verify client certificates"))
		}
	}
	if err := l.Errors(errors.Join(errs...)); err != nil {
		return nil, err
	}
	return c, nil
}

// checkCA asks the ACME CA whether it offers tls.acme.profile (-t and
// startup): one it does not offer is an error with file and line; a CA
// that cannot be reached is only warned of, as cached certificates
// still serve.
func (c *compiled) checkCA(ctx context.Context, warn func(error)) error {
	err := c.tls.CheckCA(ctx)
	if errors.Is(err, tlsconf.ErrCAUnreachable) {
		warn(err)
		return nil
	}
	if err != nil {
		return c.Errors(fielderr.Under("tls.", err))
	}
	return nil
}

// compileProcess checks the keys that are the process's rather than the
// proxy's or TLS's: listeners, [admin], logs. It returns log_level.
func compileProcess(f *config.File) (slog.Level, error) {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fielderr.Wrap(key, err))
		}
	}
	add("listen", listenaddr.Check(f.Listen))
	if f.Redirect.Listen != "" {
		add("redirect.listen", listenaddr.Check(f.Redirect.Listen))
	}
	add("admin.listen", checkAdmin(f.Admin))
	switch f.LogFormat {
	case "", "text", "json":
	default:
		add("log_format", fmt.Errorf(`must be "text" or "json", got %q`, f.LogFormat))
	}
	if f.LogFile != "" {
		if fi, err := os.Stat(filepath.Dir(f.LogFile)); err != nil || !fi.IsDir() {
			add("log_file", fmt.Errorf("directory %s does not exist", filepath.Dir(f.LogFile)))
		}
	}
	level, err := parseLevel(f.LogLevel)
	add("log_level", err)
	return level, errors.Join(errs...)
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
