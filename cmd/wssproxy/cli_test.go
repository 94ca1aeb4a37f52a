package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// runBinary runs bin with args (and env added to the environment) in dir
// and returns its stdout, stderr and exit code. It is for commands that
// exit: one still running after 30 seconds is killed.
func runBinary(t *testing.T, bin, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(testutil.Context(t, 30*time.Second), bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestCommandLine guards the command line of a real process: -h lists the
// commands and the WSSPROXY_ variables (with how WSSPROXY_ROUTE holds
// several routes) and exits 0, as every command's -h does; a bad flag
// value is one error line and one hint line, exit 1 (a mistyped flag or
// command names the one it was meant to be); -t without -config
// checks what the same flags and environment would serve.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	t.Run("-h", func(t *testing.T) {
		t.Parallel()
		out, errOut, code := runBinary(t, bin, dir, nil, "-h")
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "wssproxy "+c.name+" ") || !strings.Contains(out, "  "+c.name+" ") {
				t.Errorf("-h does not list the %s command:\n%s", c.name, out)
			}
		}
		for _, want := range []string{"WSSPROXY_LISTEN", "WSSPROXY_ROUTE", "WSSPROXY_CERT", "WSSPROXY_ACME_ACCEPT_TOS", "WSSPROXY_DEMO_BACKEND",
			`WSSPROXY_ROUTE holds one or more routes, separated by spaces`, `WSSPROXY_ROUTE="/wss=ws://127.0.0.1:8282 /api=http://127.0.0.1:8080"`, "-version"} {
			if !strings.Contains(out, want) {
				t.Errorf("-h lacks %q:\n%s", want, out)
			}
		}
		for _, action := range actionFlags { // not settable from the environment
			if strings.Contains(out, "WSSPROXY_"+strings.ToUpper(strings.ReplaceAll(action, "-", "_"))+" ") {
				t.Errorf("-h offers a variable for -%s", action)
			}
		}
	})
	for _, c := range commands() {
		t.Run(c.name+" -h", func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runBinary(t, bin, dir, nil, c.name, "-h")
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: wssproxy "+c.name) {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // the error line
	}{
		{"a bad -route", []string{"-route", "wss"}, `wssproxy: invalid value "wss" for flag -route: want PATH=BACKEND, like /wss=ws://127.0.0.1:8282, got "wss"`},
		{"a mistyped flag", []string{"-lsten", ":8443"}, "wssproxy: flag provided but not defined: -lsten (did you mean -listen?)"},
		{"an unknown flag", []string{"-zzzz"}, "wssproxy: flag provided but not defined: -zzzz"},
		{"a mistyped command", []string{"prob", "wss://localhost/"}, `wssproxy: unexpected argument "prob" (did you mean the command probe?)`},
		{"a mistyped flag of a command", []string{"probe", "-insecur", "wss://localhost/"}, "wssproxy probe: flag provided but not defined: -insecur (did you mean -insecure?)"},
		{"flags that do not go together", []string{"-cert", "c.pem"}, "wssproxy: -cert needs -key"},
		{"probe's bad -n", []string{"probe", "-n", "x", "wss://localhost/"}, `wssproxy probe: invalid value "x" for flag -n: parse error`},
		{"probe without a URL", []string{"probe"}, "wssproxy probe: probe takes one URL, like wss://chat.example.com/wss"},
		{"health's bad -timeout", []string{"health", "-timeout", "soon"}, `wssproxy health: invalid value "soon" for flag -timeout: parse error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runBinary(t, bin, dir, nil, tc.args...)
			cmd := strings.SplitN(tc.want, ":", 2)[0]
			want := tc.want + "\n" + cmd + ": see '" + cmd + " -h' for usage\n"
			if code != 1 || out != "" || errOut != want {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
			}
		})
	}
	t.Run("-t checks the embedded default", func(t *testing.T) {
		t.Parallel()
		// On a port of its own: -t binds the listeners it checks, and :8443
		// is this machine's to give.
		out, errOut, code := runBinary(t, bin, dir, []string{"WSSPROXY_LISTEN=127.0.0.1:0"}, "-t")
		if code != 0 || out != "wssproxy: embedded default configuration with environment test is successful\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("-t checks the environment", func(t *testing.T) {
		t.Parallel()
		out, errOut, code := runBinary(t, bin, dir, []string{"WSSPROXY_LISTEN=443", "WSSPROXY_ROUTE=/a=ws://h:1 /b=htp://h:2"}, "-t")
		want := "wssproxy: WSSPROXY_LISTEN: listen: must be host:port or :port, like \":443\", got \"443\"\n" +
			"wssproxy: WSSPROXY_ROUTE: route[2].backend: scheme must be ws, wss, http or https, got \"htp\"\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
		}
	})
}

// TestCheckFromAnotherDirectory guards relative paths in the file: they
// are taken from the file's directory, so -t (and serving) works from any
// working directory, and -print-config writes them absolute.
func TestCheckFromAnotherDirectory(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	cert, _ := testutil.Cert(t)
	c, k := testutil.WriteKeyPair(t, cert)
	os.Rename(c, filepath.Join(dir, "fullchain.pem"))
	os.Mkdir(filepath.Join(dir, "private"), 0o700)
	os.Rename(k, filepath.Join(dir, "private", "privkey.pem"))
	os.Mkdir(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "wssproxy.toml"), []byte(`log_file = "wssproxy.log"
listen = "127.0.0.1:0"
[tls]
cert = "fullchain.pem"
key = "private/privkey.pem"
[[route]]
path = "/"
static = "www"
`), 0o600)
	elsewhere := t.TempDir()
	cfg, err := filepath.Rel(elsewhere, filepath.Join(dir, "wssproxy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, bin, elsewhere, nil, "-t", "-config", cfg)
	if code != 0 || out != "wssproxy: configuration file "+cfg+" test is successful\n" {
		t.Fatalf("-t from another directory: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	out, errOut, code = runBinary(t, bin, elsewhere, nil, "-print-config", "-config", cfg)
	for _, want := range []string{
		`log_file = "` + filepath.Join(dir, "wssproxy.log") + `"`,
		`cert = "` + filepath.Join(dir, "fullchain.pem") + `"`,
		`key = "` + filepath.Join(dir, "private", "privkey.pem") + `"`,
		`static = "` + filepath.Join(dir, "www") + `"`,
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("-print-config lacks %s: exit %d\n%s%s", want, code, out, errOut)
		}
	}
}

// TestVersion guards -version: the module version and the commit it was
// built from (when built in a git clone), or the release the build
// stamped, then the Go version and platform; a build with neither says
// so, never a bare "(devel)".
func TestVersion(t *testing.T) {
	t.Parallel()
	platform := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	head, gitErr := exec.Command("git", "rev-parse", "HEAD").Output()
	for _, tc := range []struct {
		name  string
		flags []string
		want  func(out string) bool
	}{
		{"from a git checkout", []string{"-buildvcs=true"}, func(out string) bool {
			if gitErr != nil {
				t.Logf("not a git clone (%v): no commit to compare", gitErr)
				return strings.HasPrefix(out, "wssproxy ")
			}
			// v0.0.0-<time>-<commit>[+dirty], or the tag the commit has
			return regexp.MustCompile(`^wssproxy v\S+ \(commit ` + strings.TrimSpace(string(head)) + `, `).MatchString(out)
		}},
		{"a release build", []string{"-buildvcs=false", "-ldflags=-X main.releaseVersion=v9.8.7"}, func(out string) bool {
			return out == "wssproxy v9.8.7"+platform
		}},
		{"without VCS information", []string{"-buildvcs=false"}, func(out string) bool {
			return strings.HasPrefix(out, "wssproxy devel (no version or commit recorded: ") && !strings.Contains(out, "(devel)")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(t.TempDir(), "wssproxy")
			if out, err := exec.Command("go", append(append([]string{"build"}, tc.flags...), "-o", bin, ".")...).CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, out)
			}
			out, errOut, code := runBinary(t, bin, t.TempDir(), nil, "-version")
			if code != 0 || !strings.HasSuffix(out, platform) || !tc.want(out) {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}

// TestListenPermissionHint guards the error of a port below 1024 refused
// to a user without the privilege: it says how to grant it (setcap,
// systemd's AmbientCapabilities, the sysctl), when starting and already at
// -t, which binds what it checks. As root, the binary runs as nobody.
func TestListenPermissionHint(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if start, _ := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || start <= 1 {
		t.Skipf("every user may bind port 1 here (ip_unprivileged_port_start %q, %v)", data, err)
	}
	bin := ownBinary(t) // its directories are opened to nobody below
	if os.Geteuid() == 0 {
		// nobody must reach the binary: t.TempDir's directories are 0700.
		for d := filepath.Dir(bin); d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
			if strings.HasPrefix(d, os.TempDir()+"/") {
				os.Chmod(d, 0o755)
			}
		}
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = 65534
	}
	hint := fmt.Sprintf("listen tcp 127.0.0.1:1: bind: permission denied: ports below 1024 need a privilege this user (uid %d) lacks; "+
		"grant it with `sudo setcap cap_net_bind_service=+ep %s`, or under systemd AmbientCapabilities=CAP_NET_BIND_SERVICE, "+
		"or let every user bind from port 1 up with `sysctl net.ipv4.ip_unprivileged_port_start=1`\n", uid, bin)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"starting", []string{"-listen", "127.0.0.1:1"}, "wssproxy: listen 127.0.0.1:1: " + hint},
		{"-t", []string{"-t", "-listen", "127.0.0.1:1"}, "wssproxy: -listen: listen: " + hint},
	} {
		cmd := exec.Command(bin, tc.args...)
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: listened on port 1:\n%s", tc.name, out)
			continue
		}
		if !strings.HasSuffix(string(out), tc.want) {
			t.Errorf("%s: got:\n%s\nwant it to end with:\n%s", tc.name, out, tc.want)
		}
	}
}

// TestUnreadableKeyHint guards the error for a key this user may not read
// (certbot's privkey.pem is root's, mode 600; the image runs as 65532): it
// names the file, the user the process runs as, and the two ways out (a
// copy it can read, or running as a user that can). As root, the binary
// runs as 65532, the image's user.
func TestUnreadableKeyHint(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("file modes are Unix's")
	}
	bin := ownBinary(t)
	dir := filepath.Dir(bin)
	cert, _ := testutil.Cert(t)
	c, k := testutil.WriteKeyPair(t, cert)
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	os.Rename(c, certFile)
	os.Rename(k, keyFile)
	os.Chmod(certFile, 0o644)
	cmd := exec.Command(bin, "-t", "-listen", "127.0.0.1:0", "-cert", certFile, "-key", keyFile)
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 65532, 65532
		for d := dir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
			if strings.HasPrefix(d, os.TempDir()+"/") {
				os.Chmod(d, 0o755)
			}
		}
		os.Chmod(keyFile, 0o600) // root's, as certbot leaves it
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	} else {
		os.Chmod(keyFile, 0o000)
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	want := fmt.Sprintf("wssproxy: -key: tls.key: read key: open %s: permission denied: wssproxy runs as uid %d (gid %d), which may not read it; "+
		"give it a copy it can read (`install -m 640 -g %d privkey.pem fullchain.pem /etc/wssproxy/tls/`, in a certbot deploy hook so renewals are copied too), "+
		"or run wssproxy as a user that can (`docker run --user 0:0`, systemd's User=)\n", keyFile, uid, gid, gid)
	if err == nil || string(out) != want {
		t.Errorf("got %v:\n%s\nwant:\n%s", err, out, want)
	}
}
