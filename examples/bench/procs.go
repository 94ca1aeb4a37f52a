package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/wssproxy/wssproxy/tlsconf"
)

// The processes the bench starts, each configured for the same job: TLS
// with one ECDSA P-256 certificate on a 127.0.0.1 port, /wss proxied to
// the echo backend with X-Real-IP set, TLS 1.2 at least, long tunnel
// timeouts, no access log.

// proc is a process this program started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// spawn starts args and waits until addr accepts connections. env, if not
// nil, is added to this process's environment.
func (c *config) spawn(ctx context.Context, name, addr string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{}), log: &bytes.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return p, fmt.Errorf("%s exited: %s", name, p.log)
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%s is not listening on %s after 15 s: %s", name, addr, p.log)
		}
	}
}

// stop sends SIGTERM to the process's PID, and SIGKILL if it is still
// there after 10 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (c *config) startBackend(ctx context.Context, addr string) (*proc, error) {
	return c.spawn(ctx, "echo", addr, nil, filepath.Join(c.bin, "echo"), "-listen", addr)
}

func (c *config) startWssproxy(ctx context.Context, addr, backend string) (*proc, error) {
	return c.startWssproxyWith(ctx, addr, backend, "")
}

// startWssproxyH2 is startWssproxy with WebSockets over HTTP/2 on (off by
// default), for the wssproxy-h2 target.
func (c *config) startWssproxyH2(ctx context.Context, addr, backend string) (*proc, error) {
	return c.startWssproxyWith(ctx, addr, backend, "http2_websockets = true\n")
}

func (c *config) startWssproxyWith(ctx context.Context, addr, backend, extra string) (*proc, error) {
	cfg := filepath.Join(c.dir, "wssproxy-"+strings.ReplaceAll(addr, ":", "-")+".toml") // one per process
	err := writeTemplate(cfg, `listen = "{{.addr}}"
log_level = "warn" # no per-tunnel log lines, like access_log off
shutdown_timeout = "5s"
{{.extra}}[tls]
cert = "{{.cert}}"
key = "{{.key}}"
[admin]
listen = ""
[[route]]
path = "/wss"
backend = "ws://{{.backend}}"
`, map[string]string{"addr": addr, "cert": c.cert, "key": c.key, "backend": backend, "extra": extra})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "wssproxy", addr, nil, filepath.Join(c.bin, "wssproxy"), "-config", cfg)
}

func (c *config) startNginx(ctx context.Context, addr, backend string) (*proc, error) {
	prefix := filepath.Join(c.dir, "nginx")
	os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755)
	cfg := filepath.Join(prefix, "nginx.conf")
	err := writeTemplate(cfg, `# The seeds' nginx block, tuned only as its users would: a worker per
# core, enough connections for the idle test, no access log.
worker_processes 2;
worker_rlimit_nofile 20000;
pid {{.prefix}}/nginx.pid;
error_log {{.prefix}}/error.log warn;
events { worker_connections 19500; }
http {
  access_log off;
  client_body_temp_path {{.prefix}}/tmp/body;
  proxy_temp_path {{.prefix}}/tmp/proxy;
  fastcgi_temp_path {{.prefix}}/tmp/fastcgi;
  uwsgi_temp_path {{.prefix}}/tmp/uwsgi;
  scgi_temp_path {{.prefix}}/tmp/scgi;
  server {
    listen {{.addr}} ssl;
    ssl_certificate {{.cert}};
    ssl_certificate_key {{.key}};
    ssl_protocols TLSv1.2 TLSv1.3;
    location /wss {
      proxy_pass http://{{.backend}};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "Upgrade";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
`, map[string]string{"prefix": prefix, "addr": addr, "cert": c.cert, "key": c.key, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "nginx", addr, nil, "nginx", "-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-c", cfg, "-g", "daemon off;")
}

func (c *config) startHAProxy(ctx context.Context, addr, backend string) (*proc, error) {
	cfg := filepath.Join(c.dir, "haproxy.cfg")
	err := writeTemplate(cfg, `# The same job for HAProxy: one process, a thread per core, no logs.
global
  maxconn 9700
  nbthread 2
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend wss
  bind {{.addr}} ssl crt {{.combined}} alpn http/1.1
  http-request set-header X-Real-IP %[src]
  default_backend echo
backend echo
  server echo {{.backend}}
`, map[string]string{"addr": addr, "combined": c.combined, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "haproxy", addr, nil, "haproxy", "-db", "-f", cfg)
}

func (c *config) startCaddy(ctx context.Context, addr, backend string) (*proc, error) {
	home := filepath.Join(c.dir, "caddy")
	cfg := filepath.Join(home, "Caddyfile")
	env := c.caddyEnv() // makes home
	_, port, _ := net.SplitHostPort(addr)
	err := writeTemplate(cfg, `# The same job for Caddy: the given certificate on one loopback port and
# nothing else. No admin endpoint (:2019), no automatic HTTPS (no ACME, no
# :80 redirects, no port 443), no local CA in the trust store, HTTP/1.1
# only as for the others (no HTTP/3 on UDP), warnings only, and no access
# log (Caddy writes one only when a site asks). A tunnel has no timeout
# here, at least as long as the others' hour.
{
	admin off
	auto_https off
	skip_install_trust
	grace_period 5s
	log {
		level WARN
	}
	servers {
		protocols h1
	}
}
https://:{{.port}} {
	bind 127.0.0.1
	tls {{.cert}} {{.key}} {
		protocols tls1.2
	}
	reverse_proxy /wss {{.backend}} {
		header_up X-Real-IP {remote_host}
	}
}
`, map[string]string{"port": port, "cert": c.cert, "key": c.key, "backend": backend})
	if err != nil {
		return nil, err
	}
	return c.spawn(ctx, "caddy", addr, env, "caddy", "run", "--config", cfg, "--adapter", "caddyfile")
}

// caddyEnv points HOME and the XDG directories into the bench's temporary
// directory: Caddy keeps its state there (autosave.json, a local CA's
// files, ~/.step, which even "caddy version" creates), and it goes with
// the directory.
func (c *config) caddyEnv() []string {
	home := filepath.Join(c.dir, "caddy")
	os.MkdirAll(home, 0o755)
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CACHE_HOME=" + filepath.Join(home, "cache")}
}

func writeTemplate(path, text string, data map[string]string) error {
	var b bytes.Buffer
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// writeCert makes the one ECDSA P-256 certificate every proxy serves.
func (c *config) writeCert() error {
	cert, err := tlsconf.SelfSigned([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	c.cert, c.key, c.combined = filepath.Join(c.dir, "cert.pem"), filepath.Join(c.dir, "key.pem"), filepath.Join(c.dir, "combined.pem")
	for f, b := range map[string][]byte{c.cert: certPEM, c.key: keyPEM, c.combined: append(slices.Clone(certPEM), keyPEM...)} {
		if err := os.WriteFile(f, b, 0o644); err != nil { // nginx's workers run as nobody
			return err
		}
	}
	return nil
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
