package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestDockerfileMatchesCheck guards .ci/docker-check against drift: it must
// build with the Dockerfile's command, copy the final stage's paths, and
// run as its user. And it guards what the Dockerfile promises: built on
// the exact Go that go.mod asks for, for the target's platform; no CMD (a
// default there would be replaced by any argument after the image name):
// the defaults are ENV, the ports EXPOSE names; a HEALTHCHECK that fails
// when the listeners are not where ENV says; a .dockerignore that keeps
// .git out of the build context.
func TestDockerfileMatchesCheck(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	check, err := os.ReadFile("../../.ci/docker-check")
	if err != nil {
		t.Fatal(err)
	}
	shellVar := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `='([^']*)'$`).FindSubmatch(check)
		if m == nil {
			t.Fatalf(".ci/docker-check has no %s", name)
		}
		return string(m[1])
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 .*go build .*)$`).FindSubmatch(df)
	if build == nil || string(build[1]) != shellVar("BUILD") {
		t.Errorf("build command: Dockerfile %q, check %q", build, shellVar("BUILD"))
	}
	for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-X main.releaseVersion=$VERSION"} {
		if !strings.Contains(shellVar("BUILD"), want) {
			t.Errorf("the build command lacks %s", want)
		}
	}
	var copies []string
	for _, m := range regexp.MustCompile(`(?m)^COPY --from=build (?:--chown=\S+ )?(\S+) \S+$`).FindAllSubmatch(df, -1) {
		copies = append(copies, string(m[1]))
	}
	want := strings.Fields(shellVar("COPIES"))
	slices.Sort(copies)
	slices.Sort(want)
	if !slices.Equal(copies, want) {
		t.Errorf("final stage copies %v, check lays out %v", copies, want)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindSubmatch(df)
	if user == nil || string(user[1]) != shellVar("USERSPEC") {
		t.Errorf("USER %q, check runs as %q", user, shellVar("USERSPEC"))
	}

	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	for _, want := range []string{
		"FROM --platform=$BUILDPLATFORM golang:" + string(goVersion[1]) + "-bookworm", // the exact Go, not a floating tag
		"ENV GOTOOLCHAIN=go" + string(goVersion[1]),
		"ARG TARGETOS TARGETARCH VERSION",
		"ENV WSSPROXY_LISTEN=:443",
		"ENV WSSPROXY_REDIRECT=:80",
		"EXPOSE 443 80",
		`CMD ["/wssproxy", "health", "-env-listeners"]`,
		`ENTRYPOINT ["/wssproxy"]`,
	} {
		if !regexp.MustCompile(`(?m)^(HEALTHCHECK .*)?` + regexp.QuoteMeta(want) + `( AS build|@sha256:[0-9a-f]{64} AS build)?$`).Match(df) {
			t.Errorf("the Dockerfile lacks the line %s", want)
		}
	}
	if regexp.MustCompile(`(?m)^CMD `).Match(df) {
		t.Error("the Dockerfile has a CMD: arguments after the image name replace it; put defaults in ENV")
	}
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil || !regexp.MustCompile(`(?m)^\.git$`).Match(ignore) {
		t.Errorf(".dockerignore does not keep .git out of the build context: %v", err)
	}
}

// TestHealthCommand guards `wssproxy health`, the image's HEALTHCHECK:
// exit 0 while the admin /healthz answers, and not when nothing does; with
// -env-listeners, not when the TLS or redirect listener is elsewhere than
// WSSPROXY_LISTEN or WSSPROXY_REDIRECT ask (a command line that moved it
// away from the ports the container publishes).
func TestHealthCommand(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte("listen = \"127.0.0.1:0\"\n[redirect]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	ctx := testutil.Context(t, 10*time.Second)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	tlsAddr := logs.Wait(t, ctx, `msg=listening addr=(\S+)`)
	redirect := logs.Wait(t, ctx, `msg="redirecting to https" addr=(\S+)`)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"health", "-admin", admin}, &out, io.Discard); err != nil || out.String() != "ok\n" {
		t.Errorf("health while serving: %v %q", err, out.String())
	}
	err := run(context.Background(), []string{"health", "-admin", testutil.ClosedPort(t)}, io.Discard, io.Discard)
	if ee, ok := err.(*cli.ExitError); !ok || ee.Code != 1 {
		t.Errorf("health with nothing there: %v", err)
	}
	other := testutil.ClosedPort(t)
	for _, tc := range []struct {
		name, listen, redirect string
		want                   string // on stderr; "" for healthy
	}{
		{"where asked", tlsAddr, redirect, ""},
		{"the same ports on any address", ":" + port(tlsAddr), ":" + port(redirect), ""},
		{"nothing asked", "", "", ""},
		{"the TLS listener elsewhere", other, "", "wssproxy health: the TLS listener is on " + tlsAddr + ", but WSSPROXY_LISTEN asks for " + other +
			": is -listen on the command line overriding it? set WSSPROXY_LISTEN instead\n"},
		{"the redirect listener elsewhere", tlsAddr, other, "wssproxy health: the redirect listener is on " + redirect + ", but WSSPROXY_REDIRECT asks for " + other +
			": is -redirect on the command line overriding it? set WSSPROXY_REDIRECT instead\n"},
	} {
		t.Setenv("WSSPROXY_LISTEN", tc.listen)
		t.Setenv("WSSPROXY_REDIRECT", tc.redirect)
		var stderr bytes.Buffer
		err := run(context.Background(), []string{"health", "-env-listeners", "-admin", admin}, io.Discard, &stderr)
		if (err == nil) != (tc.want == "") || stderr.String() != tc.want {
			t.Errorf("%s: %v, stderr %q, want %q", tc.name, err, stderr.String(), tc.want)
		}
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
