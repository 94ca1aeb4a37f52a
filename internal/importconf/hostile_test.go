package importconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// importOrHang is Import(path, opts) that fails the test when it has not
// returned by the test's deadline (testutil.Deadline: a little before go
// test -timeout's). Every input here is read in a moment when the import is
// linear (BenchmarkImportHostile shows the times) and takes minutes to
// hours when it is not: a detector of hangs with no time of its own that a
// busy machine could outlast, not a timing.
func importOrHang(t *testing.T, path string, opts Options) (*Result, error) {
	t.Helper()
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Import(path, opts)
		done <- result{res, err}
	}()
	start, ctx := time.Now(), testutil.Deadline(t)
	select {
	case r := <-done:
		return r.res, r.err
	case <-ctx.Done():
		t.Fatalf("Import(%s) has not returned after %v, by the test's deadline: it hangs", path, time.Since(start).Round(time.Second))
		return nil, nil
	}
}

// nested writes levels of folders, each with width files that include
// every file of the next folder: width^levels reads for one import.
func nested(t *testing.T, dir string, width, levels int) string {
	t.Helper()
	for l := range levels {
		body := "events {}\n"
		if l < levels-1 {
			body = fmt.Sprintf("include %s/*.conf;\n", filepath.Join(dir, fmt.Sprint(l+1)))
		}
		for i := range width {
			write(t, dir, filepath.Join(fmt.Sprint(l), fmt.Sprintf("%d.conf", i)), body)
		}
	}
	return write(t, dir, "nginx.conf", fmt.Sprintf("include %s/*.conf;\n", filepath.Join(dir, "0")))
}

// TestImportBounds guards the bounds on one import: hostile or mistaken
// input (an include fan-out of 10^8 reads, a file too large, blocks nested
// millions deep) is refused, before it is read whole or built in memory,
// with an error that names the limit and the file and line it was met at.
func TestImportBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		conf func(t *testing.T, dir string) string // writes the input, returns the file to import
		want []string
	}{
		{"10 files by 8 levels of includes", func(t *testing.T, dir string) string { return nested(t, dir, 10, 8) },
			[]string{"more than 10000 files read", ".conf:1: include "}},
		{"a 7 MiB file included 5 times", func(t *testing.T, dir string) string {
			write(t, dir, "big.conf", strings.Repeat("# "+strings.Repeat("x", 1021)+"\n", 7<<10))
			return write(t, dir, "nginx.conf", "events {}\n"+strings.Repeat("include big.conf;\n", 5))
		}, []string{"nginx.conf:6: include big.conf", "32 MiB"}},
		{"a 9 MiB file", func(t *testing.T, dir string) string {
			write(t, dir, "big.conf", strings.Repeat("# "+strings.Repeat("x", 1021)+"\n", 9<<10))
			return write(t, dir, "nginx.conf", "events {}\ninclude big.conf;\n")
		}, []string{"nginx.conf:2: include big.conf", "8 MiB"}},
		{"includes 20 deep", func(t *testing.T, dir string) string {
			for i := range 20 {
				write(t, dir, fmt.Sprintf("%d.conf", i), fmt.Sprintf("include %d.conf;\n", i+1))
			}
			return write(t, dir, "nginx.conf", "events {}\ninclude 0.conf;\n")
		}, []string{"15.conf:1: include 16.conf", "nested more than 16 deep"}},
		{"4,000,000 nested a{", func(t *testing.T, dir string) string {
			return write(t, dir, "nginx.conf", strings.Repeat("a{", 4_000_000))
		}, []string{"nginx.conf:1: ", "blocks nested more than 100 deep"}},
		{"2,000,000 nested <a>", func(t *testing.T, dir string) string {
			return write(t, dir, "httpd.conf", strings.Repeat("<a>\n", 2_000_000))
		}, []string{"httpd.conf:101: ", "sections nested more than 100 deep"}},
		{"600,000 directives included twice", func(t *testing.T, dir string) string {
			write(t, dir, "a.conf", strings.Repeat("a;", 600_000))
			return write(t, dir, "nginx.conf", "events {}\ninclude a.conf;\ninclude a.conf;\n")
		}, []string{"a.conf:1: more than 1000000 directives"}},
		{"2,000,000 ${ and no }", func(t *testing.T, dir string) string {
			return write(t, dir, "nginx.conf", "a"+strings.Repeat("${", 2_000_000)+";\n")
		}, []string{"nginx.conf:1: ", "blocks nested more than 100 deep"}},
		{"1,000 proxy_set_header lines read by 2,100 locations", func(t *testing.T, dir string) string {
			var b strings.Builder
			b.WriteString("server {\n listen 443 ssl;\n")
			for i := range 1000 {
				fmt.Fprintf(&b, " proxy_set_header X-H%d v;\n", i)
			}
			return write(t, dir, "nginx.conf", b.String()+strings.TrimPrefix(locations(2100), "server {\n listen 443 ssl;\n"))
		}, []string{"nginx.conf:", "more than 2000000 inherited settings"}},
		{"400 names by 300 locations", func(t *testing.T, dir string) string {
			var b strings.Builder
			b.WriteString("server {\n listen 443 ssl;\n}\nserver {\n listen 443 ssl;\n server_name")
			for i := range 400 {
				fmt.Fprintf(&b, " h%d.example.com", i)
			}
			b.WriteString(";\n")
			for i := range 300 {
				fmt.Fprintf(&b, " location /l%d { proxy_pass http://127.0.0.1:1; }\n", i)
			}
			b.WriteString("}\n")
			return write(t, dir, "nginx.conf", b.String())
		}, []string{"nginx.conf:", "more than 100000 routes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.conf(t, t.TempDir())
			_, err := importOrHang(t, path, Options{})
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v\nwant an error with %q", err, w)
				}
			}
		})
	}
}

// TestImportRefusesSpecialFiles guards that only regular files are read:
// /dev/zero (a size-0 stat, and no end) and a folder are refused by name,
// at the line that named them, not read until memory runs out.
func TestImportRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	dir := t.TempDir()
	certAndKey, chain := pems(t)
	s := newSite(t, certAndKey, chain)
	os.Remove(s.cert)
	os.Symlink("/dev/zero", s.cert)
	for _, tc := range []struct {
		name, path string
		opts       Options
		want       []string
	}{
		{"include /dev/zero", write(t, dir, "zero.conf", "events {}\ninclude /dev/zero;\n"), Options{},
			[]string{"zero.conf:2: include /dev/zero", "not a regular file"}},
		{"a folder", dir, Options{}, []string{dir, "not a regular file"}},
		{"SSLCertificateFile /dev/zero with -o", s.conf, Options{OutDir: s.outDir},
			[]string{"httpd.conf:4: SSLCertificateFile " + s.cert, "not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := importOrHang(t, tc.path, tc.opts)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v\nwant an error with %q", err, w)
				}
			}
		})
	}
}

// TestReadRegularBoundsWhileReading guards that a file's size bound holds
// on the bytes read, not on a size from stat: /proc's files are regular
// and stat as 0 bytes, whatever they hold.
func TestReadRegularBoundsWhileReading(t *testing.T) {
	t.Parallel()
	const p = "/proc/self/status"
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Skip("no", p, "of size 0")
	}
	if data, err := readRegular(p, 10); !errors.Is(err, errTooLarge) {
		t.Errorf("read %d bytes, %v; want %v", len(data), err, errTooLarge)
	}
	if data, err := readRegular(p, 1<<20); err != nil || len(data) <= 10 {
		t.Errorf("read %d bytes, %v; want all of it", len(data), err)
	}
}

// TestImportLinear guards that input that is large but within the bounds
// is read in time linear in its size: each of these took minutes or hours
// when a step was quadratic (joining Apache's continuation lines one at a
// time; checking every new route against all the others; matching every
// ProxyPassReverse against every ProxyPass).
func TestImportLinear(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		file   string
		conf   func() string
		routes int // 0: nothing routable
	}{
		{"2,000,000 continuation lines", "httpd.conf", func() string {
			return "ServerAlias \\\n" + strings.Repeat(" a\\\n", 2_000_000) + "\n"
		}, 0},
		{"100,000 locations", "nginx.conf", func() string { return locations(100_000) }, 100_000},
		{"40,000 ProxyPass and ProxyPassReverse", "httpd.conf", func() string { return proxyPasses(40_000) }, 40_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := write(t, t.TempDir(), tc.file, tc.conf())
			res, err := importOrHang(t, path, Options{})
			switch {
			case tc.routes == 0 && !errors.Is(err, ErrNothingRoutable):
				t.Errorf("got %v, want %v", err, ErrNothingRoutable)
			case tc.routes > 0 && err != nil:
				t.Errorf("got %v", err)
			case tc.routes > 0 && res.Routes != tc.routes:
				t.Errorf("%d routes, want %d", res.Routes, tc.routes)
			}
		})
	}
}

// locations is an nginx server with n locations.
func locations(n int) string {
	var b strings.Builder
	b.WriteString("server {\n listen 443 ssl;\n")
	for i := range n {
		fmt.Fprintf(&b, " location /l%d { proxy_pass http://127.0.0.1:1; }\n", i)
	}
	b.WriteString("}\n")
	return b.String()
}

// proxyPasses is an httpd virtual host with n ProxyPass lines, each with
// its ProxyPassReverse.
func proxyPasses(n int) string {
	var b strings.Builder
	b.WriteString("Listen 443\n<VirtualHost *:443>\nSSLEngine on\n")
	for i := range n {
		fmt.Fprintf(&b, "ProxyPass /l%d ws://127.0.0.1:1/l%d\nProxyPassReverse /l%d ws://127.0.0.1:1/l%d\n", i, i, i, i)
	}
	b.WriteString("</VirtualHost>\n")
	return b.String()
}

// BenchmarkImportHostile times the inputs above at two sizes, N and 4N:
// linear, the second takes about four times the first (and its B/op four
// times the memory); the refusals take the time to read up to the bound.
func BenchmarkImportHostile(b *testing.B) {
	for _, bc := range []struct {
		name, file string
		conf       func(n int) string
		sizes      []int
	}{
		{"locations", "nginx.conf", locations, []int{25_000, 100_000}},
		{"ProxyPass", "httpd.conf", proxyPasses, []int{10_000, 40_000}},
		{"continuation lines", "httpd.conf", func(n int) string { return "ServerAlias \\\n" + strings.Repeat(" a\\\n", n) + "\n" }, []int{500_000, 2_000_000}},
		{"directives", "nginx.conf", func(n int) string { return strings.Repeat("a;", n) }, []int{250_000, 1_000_000}},
		{"nested a{ (refused)", "nginx.conf", func(n int) string { return strings.Repeat("a{", n) }, []int{1_000_000, 4_000_000}},
	} {
		for _, n := range bc.sizes {
			b.Run(fmt.Sprintf("%s/%d", bc.name, n), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), bc.file)
				if err := os.WriteFile(path, []byte(bc.conf(n)), 0o600); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					Import(path, Options{})
				}
			})
		}
	}
}
