package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
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
		})
	}
}
