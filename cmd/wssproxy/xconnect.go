package main

import (
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/wssproxy/wssproxy/internal/config"
)

// WebSockets over HTTP/2 need extended CONNECT, which Go 1.27's HTTP/2
// server advertises only when GODEBUG has http2xconnect=1 at process start
// (net/http reads it in its init; a //go:debug line is refused, and
// os.Setenv in main is too late). So when wssproxy is about to serve, it
// makes GODEBUG agree with the configuration's http2_websockets and, if it
// had to change it, re-executes itself once: syscall.Exec keeps the PID
// (pid_file, systemd, Kubernetes and -s see one process), the arguments,
// the open descriptors and every other GODEBUG setting. See proxy/doc.go
// for removing this once Go 1.28 is the floor.

// reexecKey marks the process that the re-exec started, so that it never
// re-executes again, whatever it reads.
const reexecKey = "_WSSPROXY_REEXEC"

// reexecForHTTP2 re-executes the binary with GODEBUG's http2xconnect set to
// what the configuration wants, if it is not already. It returns (and the
// process goes on as it is) when the command will not serve (probe, health,
// -t, -print-config, -s), when the configuration cannot be loaded (run then
// reports it), or when the re-exec fails (the proxy then logs that
// WebSockets use HTTP/1.1).
func reexecForHTTP2(args []string) {
	if os.Getenv(reexecKey) != "" {
		os.Unsetenv(reexecKey)
		return
	}
	want, ok := servesH2WebSockets(args)
	if !ok {
		return
	}
	godebug, changed := withXConnect(os.Getenv("GODEBUG"), want)
	if !changed {
		return
	}
	exe, err := os.Executable()
	if err != nil { // no /proc, as in a chroot: the path it was started by
		if exe, err = exec.LookPath(os.Args[0]); err != nil {
			return
		}
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	if godebug != "" {
		env = append(env, "GODEBUG="+godebug)
	}
	env = append(env, reexecKey+"=1")
	syscall.Exec(exe, os.Args, env) // returns only on failure
}

// servesH2WebSockets reports whether args run the proxy (ok) and whether
// its configuration carries WebSockets over HTTP/2.
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

// withXConnect is GODEBUG with http2xconnect=1 in it when on, and without
// any http2xconnect setting when not, the other settings kept in order;
// changed reports whether that differs from what the process has, by the
// test Go's HTTP/2 package makes.
func withXConnect(godebug string, on bool) (string, bool) {
	if strings.Contains(godebug, "http2xconnect=1") == on {
		return godebug, false
	}
	var kept []string
	for _, kv := range strings.Split(godebug, ",") {
		if kv != "" && !strings.HasPrefix(strings.TrimSpace(kv), "http2xconnect=") {
			kept = append(kept, kv)
		}
	}
	if on {
		kept = append(kept, "http2xconnect=1")
	}
	return strings.Join(kept, ","), true
}
