package main

import (
	"io"
	"strings"

	"github.com/wssproxy/wssproxy/internal/config"
)

// servesH2WebSockets reports whether args run the proxy (ok) and whether
// its configuration carries WebSockets over HTTP/2: what internal/xconnect
// asks before it re-executes with GODEBUG's http2xconnect. Not serving
// (probe, health, -t, -print-config, -s) or a configuration that cannot be
// loaded (run then reports it) is not ok.
func servesH2WebSockets(args []string) (want, ok bool) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return false, false // a subcommand (probe, health…) or a stray argument
	}
	o, err := parseFlags(args, io.Discard)
	if err != nil || o.signal != "" || o.check || o.printConfig {
		return false, false
	}
	l, err := config.Load(&o.cfg)
	if err != nil {
		return false, false
	}
	return l.Config.H2WebSockets(), true
}
