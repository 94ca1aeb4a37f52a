package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
)

// ExtendedConnect makes the test binary's HTTP/2 servers advertise
// extended CONNECT (RFC 8441), as the wssproxy binary does for itself:
// Go 1.27 reads GODEBUG=http2xconnect=1 only at process start, so when it
// is missing the binary re-executes itself, once, with it added (same PID,
// arguments and output, so `go test` sees nothing). Call it first in
// TestMain.
func ExtendedConnect() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "http2xconnect=1") {
		return
	}
	const guard = "_WSSPROXY_TEST_REEXEC"
	if os.Getenv(guard) != "" {
		fmt.Fprintln(os.Stderr, "testutil.ExtendedConnect: re-executed, and GODEBUG still lacks http2xconnect=1")
		os.Exit(2)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testutil.ExtendedConnect:", err)
		os.Exit(2)
	}
	if godebug != "" {
		godebug += ","
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	env = append(env, "GODEBUG="+godebug+"http2xconnect=1", guard+"=1")
	err = syscall.Exec(exe, os.Args, env) // returns only on failure
	fmt.Fprintln(os.Stderr, "testutil.ExtendedConnect: re-exec:", err)
	os.Exit(2)
}
