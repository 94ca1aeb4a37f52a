// Package health is `wssproxy health`, the admin listener asked from the
// command line, and what the admin /healthz says about the listeners.
package health

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/config"
)

// Listening is where a running wssproxy's public listeners are, as the
// admin /healthz reports them in its headers.
type Listening struct {
	TLS      string // the TLS listener's address, "[::]:443"
	Redirect string // the [redirect] listener's; "" when there is none
}

// The headers of /healthz that carry a Listening.
const (
	headerTLS      = "X-Wssproxy-Listen"
	headerRedirect = "X-Wssproxy-Redirect"
)

// SetHeaders puts l into h. A nil l sets nothing.
func (l *Listening) SetHeaders(h http.Header) {
	if l == nil {
		return
	}
	h.Set(headerTLS, l.TLS)
	if l.Redirect != "" {
		h.Set(headerRedirect, l.Redirect)
	}
}

// Ask GETs path from the admin listener at admin and returns the response's
// status and the listeners it reports.
func Ask(ctx context.Context, admin, path string) (int, *Listening, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dialable(admin)+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	var l *Listening
	if tls := resp.Header.Get(headerTLS); tls != "" {
		l = &Listening{TLS: tls, Redirect: resp.Header.Get(headerRedirect)}
	}
	return resp.StatusCode, l, nil
}

// dialable is addr with an empty or unspecified host (":9090",
// "0.0.0.0:9090") made loopback: the admin listener is there too, and
// answers a Host that is an IP address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// SamePort reports whether the listener at got ("[::]:443") is where want
// (":443", "0.0.0.0:443", "10.0.0.1:443") asks for: the same port, and
// the same address when want names an IP address other than an
// unspecified one.
func SamePort(want, got string) bool {
	wh, wp, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	gh, gp, err := net.SplitHostPort(got)
	if err != nil {
		return false
	}
	wn, werr := net.LookupPort("tcp", wp)
	gn, gerr := net.LookupPort("tcp", gp)
	if werr != nil || gerr != nil || wn != gn {
		return false
	}
	wip, gip := net.ParseIP(wh), net.ParseIP(gh)
	if wip == nil || wip.IsUnspecified() || gip == nil {
		return true // a host name: the port is what can be told here
	}
	return wip.Equal(gip)
}

// Run is `wssproxy health`: GET the admin /healthz (or -path
// /readyz), exit 0 when it answers 200. It is the container's HEALTHCHECK
// and Kubernetes' exec probe: an empty image has no curl, and the admin
// listener is loopback-only, out of reach of the kubelet's HTTP probes.
//
// With -env-listeners it fails, too, when the TLS listener is not where
// WSSPROXY_LISTEN in its environment asks (and the redirect listener not
// where WSSPROXY_REDIRECT asks): the image's HEALTHCHECK runs it in the
// container's environment, so a container whose command line moved the
// listener away from the ports it publishes is unhealthy, not healthy.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy health", flag.ContinueOnError)
	admin := fs.String("admin", config.DefaultAdmin, "admin listener `address`")
	path := fs.String("path", "/healthz", "endpoint to ask: /healthz (serving) or /readyz (backends reachable)")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit")
	envListeners := fs.Bool("env-listeners", false, "also fail unless the TLS listener is where "+config.EnvName("listen")+" asks and the\nredirect listener where "+config.EnvName("redirect")+" asks (each when set): the image's HEALTHCHECK")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy health [flags]\n\nAsks the admin listener's /healthz (or -path) and exits 0 when it answers\n200 OK, 1 otherwise: the container's HEALTHCHECK and Kubernetes' exec probe. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlagsOnly(fs, args, stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	status, listening, err := Ask(ctx, *admin, *path)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%d %s", status, http.StatusText(status))
	}
	if err == nil && *envListeners {
		err = checkEnv(listening)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wssproxy health:", err)
		return &cli.ExitError{Code: 1}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// checkEnv compares the listeners with WSSPROXY_LISTEN and
// WSSPROXY_REDIRECT, each when set and not empty.
func checkEnv(l *Listening) error {
	if l == nil {
		return errors.New("the admin listener does not say where the TLS listener is (a wssproxy older than this command?)")
	}
	listenVar, redirectVar := config.EnvName("listen"), config.EnvName("redirect")
	if want := os.Getenv(listenVar); want != "" && !SamePort(want, l.TLS) {
		return fmt.Errorf("the TLS listener is on %s, but %s asks for %s: is -listen on the command line overriding it? set %s instead",
			l.TLS, listenVar, want, listenVar)
	}
	switch want := os.Getenv(redirectVar); {
	case want == "":
	case l.Redirect == "":
		return fmt.Errorf("no redirect listener, but %s asks for %s (ACME's HTTP-01 challenges and the redirect to https need it)", redirectVar, want)
	case !SamePort(want, l.Redirect):
		return fmt.Errorf("the redirect listener is on %s, but %s asks for %s: is -redirect on the command line overriding it? set %s instead",
			l.Redirect, redirectVar, want, redirectVar)
	}
	return nil
}
