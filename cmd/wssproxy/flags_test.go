package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestOneLineFlags guards the one-route deployment without a file: flags
// and their WSSPROXY_ environment variables make the configuration, flags
// override a file, -t checks the result, and a conflicting or incomplete
// combination is an error naming both flags.
func TestOneLineFlags(t *testing.T) {
	cert, _ := testutil.Cert(t)
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
	file := filepath.Join(t.TempDir(), "f.toml")
	os.WriteFile(file, []byte("listen = \":8443\"\n[[route]]\npath = \"/old\"\nbackend = \"ws://127.0.0.1:1\"\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in -print-config's output, or the error
		fail bool
	}{
		{"flags", nil, []string{"-listen", ":443", "-route", "/wss=ws://127.0.0.1:8282", "-cert", certFile, "-key", keyFile},
			"listen = \":443\"\n\n[tls]\n  cert = \"" + certFile + "\"\n  key = \"" + keyFile + "\"", false},
		{"environment", map[string]string{"WSSPROXY_ROUTE": "/a=ws://h:1 /b=ws://h:2", "WSSPROXY_LISTEN": ":9443"}, nil,
			"path = \"/a\"\n  backend = \"ws://h:1\"\n\n[[route]]\n  path = \"/b\"", false},
		{"several routes in one -route", nil, []string{"-route", "/a=ws://h:1 /b=ws://h:2"},
			"path = \"/a\"\n  backend = \"ws://h:1\"\n\n[[route]]\n  path = \"/b\"", false},
		{"the command line wins over the environment", map[string]string{"WSSPROXY_LISTEN": ":9443"}, []string{"-listen", ":7443"}, `listen = ":7443"`, false},
		{"flags override the file", nil, []string{"-config", file, "-route", "/new=ws://h:1"}, "path = \"/new\"", false},
		{"flags complete a file without routes", nil, []string{"-config", os.DevNull, "-route", "/wss=ws://h:1"}, "path = \"/wss\"", false},
		{"the merged result is checked", nil, []string{"-config", file, "-route", "/x=htp://h:1"}, "-route: route[1].backend: scheme must be", true},
		{"acme", nil, []string{"-acme", "chat.example.com,game.example.com", "-acme-email", "ops@example.com", "-acme-accept-tos", "-route", "/wss=ws://h:1"},
			"hosts = [\"chat.example.com\", \"game.example.com\"]", false},
		{"-cert without -key", nil, []string{"-cert", certFile}, "-cert needs -key", true},
		{"-acme without -acme-accept-tos", nil, []string{"-acme", "chat.example.com"}, "-acme needs -acme-accept-tos", true},
		{"-acme-email alone", nil, []string{"-acme-email", "a@b.c"}, "-acme-email and -acme-accept-tos go with -acme", true},
		{"-demo with -route", nil, []string{"-demo", "-route", "/x=ws://h:1"}, "-demo runs its own route and certificate; it does not take -route", true},
		{"a bad route", nil, []string{"-route", "/wss=htp://h:1"}, `-route: route[1].backend: scheme must be ws, wss, http or https, got "htp"`, true},
		{"a bad route in the environment", map[string]string{"WSSPROXY_ROUTE": "wss"}, nil, "WSSPROXY_ROUTE: want PATH=BACKEND", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"-print-config"}, tc.args...), &out, io.Discard)
			got := out.String()
			if err != nil {
				got = err.Error()
			}
			if (err != nil) != tc.fail || !strings.Contains(got, tc.want) {
				t.Errorf("got %v:\n%s\nwant %q", err, got, tc.want)
			}
		})
	}
	// -t checks what flags make.
	var out bytes.Buffer
	if err := run(withoutBindCheck(context.Background()), []string{"-t", "-route", "/wss=ws://127.0.0.1:8282"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "test is successful") {
		t.Errorf("-t with -route: %v %q", err, out.String())
	}
}

// TestDemoPrintConfig guards that -demo -print-config shows what -demo
// serves: the echo backend's WebSocket route and its test page at /.
func TestDemoPrintConfig(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-demo", "-demo-backend", "127.0.0.1:9999", "-print-config"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := "[[route]]\n  path = \"/wss\"\n  backend = \"ws://127.0.0.1:9999\"\n\n[[route]]\n  path = \"/\"\n  backend = \"http://127.0.0.1:9999\"\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("got:\n%s\nwant it to end with:\n%s", out.String(), want)
	}
}

// TestEmptyVariable guards that an empty WSSPROXY_ variable is unset: the
// image's defaults (WSSPROXY_LISTEN=:443, WSSPROXY_REDIRECT=:80) are
// cleared with -e WSSPROXY_LISTEN=, and a file's keys then count.
func TestEmptyVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f.toml")
	os.WriteFile(file, []byte("listen = \":8443\"\n[redirect]\nlisten = \":8080\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:1\"\n"), 0o600)
	for _, v := range []string{"WSSPROXY_LISTEN", "WSSPROXY_REDIRECT", "WSSPROXY_ROUTE", "WSSPROXY_ACME_ACCEPT_TOS"} {
		t.Setenv(v, "")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-print-config", "-config", file}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen = \":8443\"", "[redirect]\n  listen = \":8080\"", "path = \"/wss\""} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-print-config lacks %q:\n%s", want, out.String())
		}
	}
}
