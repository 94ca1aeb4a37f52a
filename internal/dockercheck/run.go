//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// checker runs documented containers the way Docker would run them from
// the image: the final stage's files in a root of their own (chroot), the
// process composed of ENTRYPOINT and the arguments (or CMD), ENV with the
// container's variables over it, as USER or --user, in a network
// namespace where, as in Docker's, every user may bind any port.
type checker struct {
	img  *image
	base string // the final stage's files, laid out by .ci/docker-check
	host string // a wssproxy binary to run outside the root (probe)
	tmp  string
	docs string // every documentation file, for errors they quote
}

// outcome is what running one container showed.
type outcome struct {
	tls, redirect string // where its listeners are, from its log
	logs          *syncBuffer
	exited        error // non-nil when the process ended by itself
}

// dockerPath is the PATH Docker gives a container whose image sets none.
const dockerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// compose returns the process of c as Docker composes it: argv, the
// environment, and the user.
func (ck *checker) compose(c container) (argv, env []string, user string) {
	argv = append(argv, ck.img.Entrypoint...)
	if c.Entrypoint != nil {
		argv = append([]string(nil), c.Entrypoint...)
	}
	if len(c.Args) > 0 {
		argv = append(argv, c.Args...) // arguments replace CMD entirely
	} else {
		argv = append(argv, ck.img.Cmd...)
	}
	vars := map[string]string{"PATH": dockerPath, "HOSTNAME": "docker-check", "HOME": "/"}
	order := []string{"PATH", "HOSTNAME", "HOME"}
	for _, k := range ck.img.EnvOrder {
		vars[k] = ck.img.Env[k]
		order = append(order, k)
	}
	for k, v := range c.Env {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	user = c.User
	if user == "" {
		user = ck.img.User
	}
	if !strings.Contains(user, ":") {
		user += ":0" // Docker's group for a uid with no passwd entry
	}
	return argv, env, user
}

// prepare lays out a root for c: the image's files, then its volumes. A
// named volume starts with what the image has at its path (Docker copies
// it in). A bind mount holds the certificate files c's arguments name
// under it, made as the documentation says they are made: certbot's
// layout under /etc/letsencrypt (private keys root's, mode 600, in
// directories only root may enter), elsewhere the deploy hook's copy
// (mode 640, group the image's user's).
func (ck *checker) prepare(c container, argv, env []string) (string, error) {
	root, err := os.MkdirTemp(ck.tmp, "root-")
	if err != nil {
		return "", err
	}
	if err := copyTree(ck.base, root); err != nil {
		return "", err
	}
	files := fileArgs(argv, env)
	for _, v := range c.Volumes {
		target := filepath.Join(root, v.Target)
		if v.Named {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return "", err
			}
			continue
		}
		var under []string
		for _, f := range files {
			if strings.HasPrefix(f, v.Target+"/") {
				under = append(under, f)
			}
		}
		if len(under) == 0 {
			return "", fmt.Errorf("bind mount %s:%s: no file the command names is under it, so the check cannot know what it holds", v.Source, v.Target)
		}
		if err := ck.certFiles(root, v.Target, under); err != nil {
			return "", err
		}
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(root, f)); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: the command names it, but no volume provides it", f)
		}
	}
	return root, nil
}

// fileArgs lists the files a command line and environment name: -cert,
// -key, -config and their variables.
func fileArgs(argv, env []string) []string {
	var out []string
	named := map[string]bool{"-cert": true, "-key": true, "-config": true}
	for i := 0; i < len(argv); i++ {
		name, val, ok := strings.Cut(strings.TrimPrefix(argv[i], "-"), "=")
		if !named["-"+name] {
			continue
		}
		if !ok && i+1 < len(argv) {
			i++
			val = argv[i]
		}
		out = append(out, val)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if (k == "WSSPROXY_CERT" || k == "WSSPROXY_KEY" || k == "WSSPROXY_CONFIG") && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// certFiles makes the certificate and key files named (paths in the
// container) under the bind mount at target.
func (ck *checker) certFiles(root, target string, names []string) error {
	certPEM, keyPEM, err := selfSigned(hostOf(names))
	if err != nil {
		return err
	}
	gid := 0
	if _, g, ok := strings.Cut(ck.img.User, ":"); ok {
		gid, _ = strconv.Atoi(g)
	}
	for _, name := range names {
		base := filepath.Base(name)
		data, mode := certPEM, os.FileMode(0o644)
		switch {
		case strings.Contains(base, "key"):
			data, mode = keyPEM, 0o600
		case strings.Contains(base, "cert") || strings.Contains(base, "chain"):
		default:
			return fmt.Errorf("%s: neither a certificate nor a key; the check makes only those", name)
		}
		path := filepath.Join(root, name)
		if target == "/etc/letsencrypt" {
			// live/NAME/privkey.pem -> ../../archive/NAME/privkey1.pem
			rel, err := filepath.Rel("/etc/letsencrypt/live", filepath.Dir(name))
			if err != nil || strings.HasPrefix(rel, "..") || strings.Contains(rel, "/") {
				return fmt.Errorf("%s: certbot's files are /etc/letsencrypt/live/NAME/*.pem", name)
			}
			archive := filepath.Join(root, "/etc/letsencrypt/archive", rel)
			for _, d := range []string{filepath.Dir(path), archive} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			numbered := strings.TrimSuffix(base, ".pem") + "1.pem"
			if err := writeOwned(filepath.Join(archive, numbered), data, mode, 0, 0); err != nil {
				return err
			}
			os.Remove(path)
			if err := os.Symlink(filepath.Join("../../archive", rel, numbered), path); err != nil {
				return err
			}
			for _, d := range []string{"live", "archive"} { // certbot's: root's alone
				if err := os.Chmod(filepath.Join(root, "/etc/letsencrypt", d), 0o700); err != nil {
					return err
				}
			}
			continue
		}
		// The deploy hook's copy: install -d -m 750 -g GID, install -m 640
		// -g GID; the mount point's parents as Docker makes them (0755).
		if err := os.MkdirAll(filepath.Dir(filepath.Dir(path)), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Dir(path), 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(filepath.Dir(path), 0o750); err != nil {
			return err
		}
		if err := os.Chown(filepath.Dir(path), 0, gid); err != nil {
			return err
		}
		if err := writeOwned(path, data, 0o640, 0, gid); err != nil {
			return err
		}
	}
	return nil
}

// hostOf is the name certbot's path gives (live/NAME/), else localhost.
func hostOf(names []string) string {
	for _, n := range names {
		if m := regexp.MustCompile(`/live/([^/]+)/`).FindStringSubmatch(n); m != nil {
			return m[1]
		}
	}
	return "localhost"
}

func writeOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// selfSigned makes an ECDSA P-256 certificate for host, valid for a day.
func selfSigned(host string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// copyTree copies the directory src to dst, keeping modes and owners;
// regular files are hard-linked (the binary is the bulk).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, fi.Mode().Perm()); err != nil {
				return err
			}
			os.Chmod(to, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		default:
			if err := os.Link(p, to); err != nil {
				return err
			}
		}
		return os.Lchown(to, int(st.Uid), int(st.Gid))
	})
}

// syncBuffer is a bytes.Buffer for a process's output read while written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs argv in root as user with env, and waits until it says it
// serves (or ends). stop ends it.
func (ck *checker) start(root, user string, argv, env []string) (out *outcome, stop func(), err error) {
	cmd := exec.Command("chroot", append([]string{"--userspec=" + user, root}, argv...)...)
	cmd.Env = env
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	out = &outcome{logs: logs}
	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case err := <-exited:
			out.exited = fmt.Errorf("exited (%v)", err)
			if err == nil {
				out.exited = errors.New("exited with status 0")
			}
			return out, func() {}, nil
		case <-deadline:
			stop()
			return nil, nil, fmt.Errorf("no listening line within 15 s:\n%s", logs)
		case <-time.After(50 * time.Millisecond):
		}
		l := logs.String()
		m := listening.FindStringSubmatch(l)
		if m == nil || !strings.Contains(l, "msg=route") {
			continue // routes are logged after the listeners: all are open then
		}
		out.tls = m[1]
		if r := regexp.MustCompile(`msg="redirecting to https" addr=(\S+)`).FindStringSubmatch(l); r != nil {
			out.redirect = r[1]
		}
		uid := procUID(cmd.Process.Pid)
		want, _, _ := strings.Cut(user, ":")
		if uid != want {
			stop()
			return nil, nil, fmt.Errorf("runs as uid %s, want %s", uid, want)
		}
		return out, stop, nil
	}
}

// acmeHosts are the ACME hosts of the configuration argv and env make,
// from the binary's own -print-config.
func (ck *checker) acmeHosts(root, user string, argv, env []string) ([]string, error) {
	cmd := exec.Command("chroot", append([]string{"--userspec=" + user, root, argv[0], "-print-config"}, argv[1:]...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("-print-config: %v", err)
	}
	m := regexp.MustCompile(`(?m)^\s*hosts = \[(.*)\]`).FindSubmatch(out)
	if m == nil {
		return nil, nil
	}
	var hosts []string
	for _, h := range strings.Split(string(m[1]), ",") {
		hosts = append(hosts, strings.Trim(strings.TrimSpace(h), `"`))
	}
	return hosts, nil
}

// procUID is the real uid of process pid, from /proc.
func procUID(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return "?"
}

// health runs the image's HEALTHCHECK as Docker does: in the container,
// with its environment and user. It returns the command's output and
// whether it passed.
func (ck *checker) health(root, user string, env []string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{"--userspec=" + user, root}, ck.img.Healthcheck...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// checkTLS says whether a TLS server answers on port: a handshake, or a
// TLS alert (ACME answers a name it may not order for, here localhost,
// with one, rather than asking the CA).
func checkTLS(port string) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err == nil {
		return c.Close()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" { // crypto/tls's alert from the peer
		return nil
	}
	return err
}

// checkRedirect says whether the redirect listener on port answers a
// request with its 308 to https (to tlsPort), and, with ACME, whether it
// hands the HTTP-01 challenge path to ACME instead.
func checkRedirect(port, tlsPort string, acmeHosts []string, logs func() string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	host := "chat.example.com"
	if len(acmeHosts) > 0 {
		host = acmeHosts[0]
	}
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", port)+path, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get("/docker-check?x=1")
	if err != nil {
		return "", err
	}
	want := "https://" + host + "/docker-check?x=1"
	if tlsPort != "443" {
		want = "https://" + net.JoinHostPort(host, tlsPort) + "/docker-check?x=1"
	}
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		return "", fmt.Errorf("GET /docker-check?x=1: %s, Location %q; want 308 to %s", resp.Status, resp.Header.Get("Location"), want)
	}
	if len(acmeHosts) == 0 {
		return "308 to " + want, nil
	}
	resp, err = get("/.well-known/acme-challenge/docker-check")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusPermanentRedirect {
		return "", fmt.Errorf("an HTTP-01 challenge got %s, not ACME's answer", resp.Status)
	}
	// The ACME handler logs each challenge; the line may reach the pipe
	// a moment after the response.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs(), `msg="ACME HTTP-01 challenge"`); {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("an HTTP-01 challenge got %s, but ACME did not log it", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "308 to " + want + "; HTTP-01 challenges answered by ACME (" + resp.Status + " for an unknown token)", nil
}
