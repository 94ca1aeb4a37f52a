// Package health is `wssproxy health`, the admin listener asked from the
// command line.
package health

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/config"
)

// Run is `wssproxy health`: GET the admin /healthz (or -path
// /readyz), exit 0 when it answers 200. It is the container's HEALTHCHECK
// and Kubernetes' exec probe: an empty image has no curl, and the admin
// listener is loopback-only, out of reach of the kubelet's HTTP probes.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy health", flag.ContinueOnError)
	admin := fs.String("admin", config.DefaultAdmin, "admin listener `address`")
	path := fs.String("path", "/healthz", "endpoint to ask: /healthz (serving) or /readyz (backends reachable)")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy health [flags]\n\nAsks the admin listener's /healthz (or -path) and exits 0 when it answers\n200 OK, 1 otherwise: the container's HEALTHCHECK and Kubernetes' exec probe. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseArgs(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+*path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "wssproxy health:", err)
		return &cli.ExitError{Code: 1}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "wssproxy health:", resp.Status)
		return &cli.ExitError{Code: 1}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
