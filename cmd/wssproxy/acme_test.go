package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestCheckProfile guards that -t asks the CA's directory for
// tls.acme.profile: an offered profile passes, another is refused with
// file, line and the profiles the CA offers, and a CA that cannot be
// reached is a warning, not a failure.
func TestCheckProfile(t *testing.T) {
	t.Parallel()
	p := testutil.StartPebbleWith(t, testutil.PebbleOptions{
		HTTPPort: testutil.Port(t, testutil.ClosedPort(t)), TLSPort: testutil.Port(t, testutil.ClosedPort(t)),
		Profiles: map[string]time.Duration{"classic": time.Hour, "shortlived": time.Hour},
	})
	for _, tc := range []struct{ name, dir, profile, want, warn string }{
		{"offered", p.DirectoryURL, "shortlived", "", ""},
		{"not offered", p.DirectoryURL, "tlsserver", `:9: tls.acme.profile: "tlsserver" is not offered by the CA at ` + p.DirectoryURL + `; it offers "classic", "shortlived"`, ""},
		{"CA down", "https://" + testutil.ClosedPort(t) + "/dir", "tlsserver", "", "warning: tlsconf: ACME directory not read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n[tls.acme]\nhosts = [\"chat.wssproxy.test\"]\naccept_tos = true\ndirectory_url = %q\nca_roots = %q\nprofile = %q\ncache_dir = %q\n",
				tc.dir, p.APIRoots, tc.profile, t.TempDir())), 0o600)
			var stdout, stderr bytes.Buffer
			err := run(withoutBindCheck(context.Background()), []string{"-t", "-config", cfg}, &stdout, &stderr)
			switch {
			case tc.want == "" && (err != nil || !strings.Contains(stdout.String(), "test is successful")):
				t.Fatalf("-t: %v %q", err, stdout.String())
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), cfg+tc.want)):
				t.Fatalf("got %v, want %q", err, cfg+tc.want)
			}
			if !strings.Contains(stderr.String(), tc.warn) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.warn)
			}
			if tc.want == "" {
				return
			}
			// Starting is refused the same way, before any listener opens.
			err = run(context.Background(), []string{"-config", cfg, "-listen", "127.0.0.1:0"}, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), cfg+tc.want) {
				t.Errorf("start: %v, want %q", err, cfg+tc.want)
			}
		})
	}
}

// TestAdminACME guards renewals you can watch, end to end: with one ACME
// host the CA issues for and one it refuses, /metrics has the first's
// expiry (the label file certificates use) and next renewal, and the
// second's failed order counted with its error; the status page shows
// both, the refusal with the CA's problem; the refusal is logged at error
// (no certificate at all) with the problem document.
func TestAdminACME(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	tlsAddr := testutil.ClosedPort(t)
	p := testutil.StartPebbleWith(t, testutil.PebbleOptions{
		HTTPPort: testutil.Port(t, testutil.ClosedPort(t)), TLSPort: testutil.Port(t, tlsAddr),
		Validity: 90 * 24 * time.Hour, Blocked: []string{"blocked.wssproxy.test"},
	})
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = %q
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backend = "ws://127.0.0.1:8282"
[tls.acme]
hosts = ["chat.wssproxy.test", "blocked.wssproxy.test"]
accept_tos = true
directory_url = %q
ca_roots = %q
cache_dir = %q
`, tlsAddr, p.DirectoryURL, p.APIRoots, t.TempDir())), 0o600)
	logs, _ := startRun(t, "-config", cfg)
	admin := logs.Wait(t, ctx, `msg="admin listening" addr=(\S+)`)
	logs.Wait(t, ctx, `msg="ACME certificate obtained" host=chat.wssproxy.test`)
	refused := logs.Wait(t, ctx, `level=ERROR msg="ACME order failed; no certificate for this host" host=blocked.wssproxy.test .*`)
	if !strings.Contains(refused, "problem_type=urn:ietf:params:acme:error:rejectedIdentifier") {
		t.Errorf("refusal logged without the CA's problem: %s", refused)
	}
	waitMetric(t, ctx, admin, `wssproxy_acme_renewal_errors_total{host="blocked.wssproxy.test"}`, "1")
	waitMetric(t, ctx, admin, `wssproxy_acme_renewal_errors_total{host="chat.wssproxy.test"}`, "0")
	m := scrape(t, admin)
	var lastErr bool
	for k := range m {
		lastErr = lastErr || strings.HasPrefix(k, `wssproxy_acme_last_renewal_error_timestamp_seconds{error="`) && strings.Contains(k, `rejectedIdentifier`) && strings.Contains(k, `host="blocked.wssproxy.test"`)
	}
	if !lastErr {
		t.Errorf("no last error for blocked.wssproxy.test in %v", m)
	}
	for _, k := range []string{`wssproxy_certificate_expiry_timestamp_seconds{host="chat.wssproxy.test"}`, `wssproxy_acme_next_renewal_timestamp_seconds{host="chat.wssproxy.test"}`} {
		if v, err := strconv.ParseFloat(m[k], 64); err != nil || v < float64(time.Now().Add(24*time.Hour).Unix()) {
			t.Errorf("%s = %q, want a time more than a day ahead", k, m[k])
		}
	}
	if _, ok := m[`wssproxy_certificate_expiry_timestamp_seconds{host="blocked.wssproxy.test"}`]; ok {
		t.Error("an expiry for a host that has no certificate")
	}
	code, page := get(t, "http://"+admin+"/")
	for _, want := range []string{"chat.wssproxy.test", "blocked.wssproxy.test", "none yet", "rejectedIdentifier"} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
