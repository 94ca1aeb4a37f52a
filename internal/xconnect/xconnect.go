// Package xconnect makes GODEBUG agree with the configuration before
// wssproxy serves. WebSockets over HTTP/2 need extended CONNECT, which Go
// 1.27's HTTP/2 server advertises only when GODEBUG has http2xconnect=1 at
// process start (net/http reads it in its init; a //go:debug line is
// refused, and os.Setenv in main is too late). So when wssproxy is about
// to serve, it makes GODEBUG agree with the configuration's
// http2_websockets and, if it had to change it, re-executes itself once:
// syscall.Exec keeps the PID (pid_file, systemd, Kubernetes and -s see one
// process), the arguments, the open descriptors and every other GODEBUG
// setting. See proxy/doc.go for removing this once Go 1.28 is the floor.
package xconnect

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
)

// reexecKey marks the process that the re-exec started, so that it never
// re-executes again, whatever it reads.
const reexecKey = "_WSSPROXY_REEXEC"

// Reexec re-executes the binary with GODEBUG's http2xconnect set to what
// the configuration wants, if it is not already. wants answers whether
// this invocation serves (ok) and whether its configuration carries
// WebSockets over HTTP/2 (want); it is not asked in the re-executed
// process. Reexec returns (and the process goes on as it is) when the
// command will not serve, when GODEBUG already agrees, or when the
// re-exec fails (the proxy then logs that WebSockets use HTTP/1.1).
func Reexec(wants func() (want, ok bool)) {
	if os.Getenv(reexecKey) != "" {
		os.Unsetenv(reexecKey)
		return
	}
	want, ok := wants()
	if !ok {
		return
	}
	godebug, changed := WithXConnect(os.Getenv("GODEBUG"), want)
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

// WithXConnect is GODEBUG with http2xconnect=1 in it when on, and without
// any http2xconnect setting when not, the other settings kept in order;
// changed reports whether that differs from what the process has, by the
// test Go's HTTP/2 package makes.
func WithXConnect(godebug string, on bool) (string, bool) {
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
