package importconf

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// site is an Apache virtual host whose certificate is given in two files
// (SSLCertificateFile and SSLCertificateChainFile), in a folder of its
// own, and an empty folder for -o.
type site struct {
	conf, cert, chain string // httpd.conf and the files it names
	outDir, out       string // -o's folder and file
	full              string // the full chain -o writes beside out
}

// newSite writes httpd.conf naming cert and chain, whose contents are
// given; SSLCertificateFile is on line 4, SSLCertificateChainFile on 5.
func newSite(t *testing.T, cert, chain []byte) site {
	t.Helper()
	src := t.TempDir()
	s := site{cert: filepath.Join(src, "site.pem"), chain: filepath.Join(src, "chain.pem"), outDir: t.TempDir()}
	s.out, s.full = filepath.Join(s.outDir, "wssproxy.toml"), filepath.Join(s.outDir, "site-fullchain.pem")
	os.WriteFile(s.cert, cert, 0o600)
	os.WriteFile(s.chain, chain, 0o600)
	conf := fmt.Sprintf("Listen 443\n<VirtualHost *:443>\n    SSLEngine on\n    SSLCertificateFile %s\n    SSLCertificateChainFile %s\n"+
		"    ProxyPass /wss ws://127.0.0.1:8282/wss\n</VirtualHost>\n", s.cert, s.chain)
	s.conf = write(t, src, "httpd.conf", conf)
	return s
}

// pems returns a certificate with its key in one file (as httpd allows in
// SSLCertificateFile) and its issuer's certificate (a chain file).
func pems(t *testing.T) (certAndKey, chain []byte) {
	t.Helper()
	now := time.Now()
	ca := testutil.Issue(t, []string{"Test CA"}, true, nil, now.Add(-time.Hour), now.Add(time.Hour))
	leaf := testutil.Issue(t, []string{"localhost"}, false, ca, now.Add(-time.Hour), now.Add(time.Hour))
	certFile, keyFile := testutil.WriteKeyPair(t, leaf)
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	return append(c, k...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]})
}

// runImport is `wssproxy import ARGS…`.
func runImport(args ...string) (stderr string, err error) {
	var out, errOut bytes.Buffer
	err = Run(context.Background(), args, &out, &errOut)
	return errOut.String(), err
}

// pemTypes lists the PEM blocks in data by type.
func pemTypes(data []byte) []string {
	var types []string
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return types
		}
		types = append(types, b.Type)
	}
}

// TestImportCopiesCertificatesOnly guards that a full chain joined from an
// SSLCertificateFile that holds the private key too (httpd allows it) has
// the certificates and nothing else: the key stays where it was.
func TestImportCopiesCertificatesOnly(t *testing.T) {
	t.Parallel()
	certAndKey, chain := pems(t)
	chain = append(chain, "\nnot PEM, a note someone left\n"...)
	s := newSite(t, certAndKey, chain)
	if stderr, err := runImport("-o", s.out, s.conf); err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	full, err := os.ReadFile(s.full)
	if err != nil {
		t.Fatal(err)
	}
	if got := pemTypes(full); strings.Join(got, ",") != "CERTIFICATE,CERTIFICATE" || bytes.Contains(full, []byte("KEY")) || bytes.Contains(full, []byte("note")) {
		t.Errorf("%s holds %v, want the certificate and the chain's, nothing else:\n%s", s.full, got, full)
	}
}

// TestImportRefusesNonCertificate guards that a file named as a
// certificate that holds none (SSLCertificateFile /etc/shadow, run as
// root) is never copied: the import fails, naming the directive and the
// file, and writes nothing.
func TestImportRefusesNonCertificate(t *testing.T) {
	t.Parallel()
	certAndKey, chain := pems(t)
	shadow := []byte("root:$y$j9T$Kx0cbT2q8RwG$3n1lZC9sY3XbQv7qU0m4yHq3o7pW1bqg8vV1e3zM6t2:19700:0:99999:7:::\n")
	keyOnly := certAndKey[bytes.Index(certAndKey, []byte("-----BEGIN PRIVATE KEY")):]
	for _, tc := range []struct {
		name        string
		cert, chain []byte
		want        string // the directive, on its line
	}{
		{"SSLCertificateFile /etc/shadow", shadow, chain, ":4: SSLCertificateFile "},
		{"a key as SSLCertificateChainFile", certAndKey, keyOnly, ":5: SSLCertificateChainFile "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, tc.cert, tc.chain)
			stderr, err := runImport("-o", s.out, s.conf)
			var exit *cli.ExitError
			if !errors.As(err, &exit) || exit.Code != 1 {
				t.Errorf("import: %v, want exit 1\n%s", err, stderr)
			}
			file := s.cert
			if strings.Contains(tc.want, "Chain") {
				file = s.chain
			}
			if !strings.Contains(stderr, tc.want+file) || !strings.Contains(stderr, "no PEM CERTIFICATE") {
				t.Errorf("stderr names not %q%s and its lack of a certificate:\n%s", tc.want, file, stderr)
			}
			if names, _ := os.ReadDir(s.outDir); len(names) > 0 {
				t.Errorf("wrote %v", names)
			}
		})
	}
}

// mode returns path's permission bits and whether it is a regular file
// (not a symlink).
func mode(t *testing.T, path string) (os.FileMode, bool) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm(), fi.Mode().IsRegular()
}

// TestImportOutputMode guards that -o's files are readable by their owner
// only: a full chain is public, but it is written from files that were
// not, and the configuration names the keys.
func TestImportOutputMode(t *testing.T) {
	t.Parallel()
	certAndKey, chain := pems(t)
	s := newSite(t, certAndKey, chain)
	if stderr, err := runImport("-o", s.out, s.conf); err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	for _, p := range []string{s.out, s.full} {
		if m, _ := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, m)
		}
	}
}

// TestImportNoOverwrite guards that -o replaces no existing file unless
// -f says so: without it the import fails naming the file and -f, and
// writes nothing at all (not the full chain either); with it the files are
// replaced.
func TestImportNoOverwrite(t *testing.T) {
	t.Parallel()
	certAndKey, chain := pems(t)
	s := newSite(t, certAndKey, chain)
	os.WriteFile(s.out, []byte("# the operator's own\n"), 0o644)
	stderr, err := runImport("-o", s.out, s.conf)
	if err == nil || !strings.Contains(stderr, s.out) || !strings.Contains(stderr, "-f") {
		t.Errorf("import over an existing file: %v, want a refusal naming it and -f:\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(s.out); string(got) != "# the operator's own\n" {
		t.Errorf("%s overwritten without -f:\n%s", s.out, got)
	}
	if _, err := os.Lstat(s.full); err == nil {
		t.Errorf("%s written though the import failed", s.full)
	}
	if stderr, err := runImport("-f", "-o", s.out, s.conf); err != nil {
		t.Fatalf("import -f: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(s.out); !bytes.Contains(got, []byte("[[route]]")) {
		t.Errorf("-f: %s not replaced:\n%s", s.out, got)
	}
	if m, _ := mode(t, s.out); m != 0o600 {
		t.Errorf("-f: mode %v, want 0600", m)
	}
}

// TestImportSymlinkAtOutput guards that a symlink planted at an output
// name is never followed: without -f it is an existing file, refused; with
// -f it is replaced by the file, and the file it pointed to is untouched.
func TestImportSymlinkAtOutput(t *testing.T) {
	t.Parallel()
	certAndKey, chain := pems(t)
	s := newSite(t, certAndKey, chain)
	victims := t.TempDir()
	for _, p := range []string{s.out, s.full} {
		victim := filepath.Join(victims, filepath.Base(p))
		os.WriteFile(victim, []byte("victim\n"), 0o644)
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
	}
	if stderr, err := runImport("-o", s.out, s.conf); err == nil {
		t.Errorf("import over symlinks without -f succeeded:\n%s", stderr)
	}
	if stderr, err := runImport("-f", "-o", s.out, s.conf); err != nil {
		t.Fatalf("import -f: %v\n%s", err, stderr)
	}
	for _, p := range []string{s.out, s.full} {
		if got, _ := os.ReadFile(filepath.Join(victims, filepath.Base(p))); string(got) != "victim\n" {
			t.Errorf("the symlink at %s was followed: its target now holds\n%s", p, got)
		}
		if m, regular := mode(t, p); !regular || m != 0o600 {
			t.Errorf("%s: regular %v, mode %v; want a regular file, 0600", p, regular, m)
		}
	}
}
