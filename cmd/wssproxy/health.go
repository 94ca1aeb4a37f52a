package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealth is `wssproxy health`: GET the admin /healthz, exit 0 when it
// answers 200. It is the container's HEALTHCHECK (an empty image has no
// curl).
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", defaultAdmin, "admin listener `address`")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit")
	if err := fs.Parse(args); err != nil {
		return &exitError{1}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "wssproxy health:", err)
		return &exitError{1}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "wssproxy health:", resp.Status)
		return &exitError{1}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
