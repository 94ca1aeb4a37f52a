//go:build linux

// Command dockercheck runs every documented way of running wssproxy's
// container image against a reproduction of the image, as Docker would
// run it, and checks that each does what it promises: .ci/docker-check
// builds the binary with the Dockerfile's command and lays out the final
// stage's files, then runs this in a network namespace of its own.
//
// No container engine runs where wssproxy is developed, so nothing else
// would notice that a documented `docker run` does not work: arguments
// after the image name replace CMD entirely and are appended to
// ENTRYPOINT, and ENV applies. For each `docker run` of the image in the
// README, docs/, examples/ and the Dockerfile's comments, and each
// compose service built from the Dockerfile, it composes the process
// (ENTRYPOINT, then the arguments or else CMD; ENV, then -e; USER, or
// --user; volumes), runs it in a root holding only the image's files,
// and checks that every port the command publishes answers as promised
// (the TLS listener with TLS, the redirect listener with its 308 to
// https and, with ACME, HTTP-01 challenges), that the image's
// HEALTHCHECK passes, and for -demo that the seeds' exchange works.
// Then it checks that the guards fail when they should: the HEALTHCHECK
// when a -listen moves the TLS listener off the published port, and
// certbot's files without --user, with an error that says why.
//
// Usage (as root): dockercheck -repo DIR -root DIR -host-binary FILE
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	repo := flag.String("repo", ".", "the repository: Dockerfile, README.md, docs/, examples/")
	base := flag.String("root", "", "`directory` holding the final stage's files, as the image has them")
	host := flag.String("host-binary", "", "a wssproxy `binary` to run outside the image (probe)")
	flag.Parse()
	if *base == "" || *host == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*repo, *base, *host); err != nil {
		fmt.Fprintln(os.Stderr, "docker-check:", err)
		os.Exit(1)
	}
}

func run(repo, base, host string) error {
	img, err := parseDockerfile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		return err
	}
	files, err := docFiles(repo)
	if err != nil {
		return err
	}
	cs, err := findContainers(repo, files)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return fmt.Errorf("no documented docker run of the image in %v", files)
	}
	tmp, err := os.MkdirTemp("", "dockercheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var docs strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			return err
		}
		docs.Write(data)
	}
	ck := &checker{img: img, base: base, host: host, tmp: tmp, docs: docs.String()}
	var failed int
	for _, c := range cs {
		fmt.Printf("docker-check: %s: %s\n", c.Where, c.Line)
		report, err := ck.check(c)
		if err != nil {
			failed++
			fmt.Printf("  FAILED: %v\n", err)
			continue
		}
		for _, l := range report {
			fmt.Println("  " + l)
		}
	}
	for _, g := range ck.guards(cs) {
		fmt.Printf("docker-check: guard: %s\n", g.name)
		msg, err := g.check()
		if err != nil {
			failed++
			fmt.Printf("  FAILED: %v\n", err)
			continue
		}
		fmt.Println("  " + msg)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(cs)+len(ck.guards(cs)))
	}
	return nil
}

// docFiles lists the documentation that may show how to run the image.
func docFiles(repo string) ([]string, error) {
	files := []string{"README.md", "Dockerfile"}
	for _, dir := range []string{"docs", "examples"} {
		err := filepath.WalkDir(filepath.Join(repo, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			switch filepath.Ext(p) {
			case ".md", ".yml", ".yaml":
				rel, _ := filepath.Rel(repo, p)
				files = append(files, rel)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	return files, nil
}

// check runs c and returns what it showed, one line each.
func (ck *checker) check(c container) ([]string, error) {
	argv, env, user := ck.compose(c)
	var report []string
	report = append(report, fmt.Sprintf("process: %q as %s, environment %s", argv, user, imageVars(env)))
	root, err := ck.prepare(c, argv, env)
	if err != nil {
		return nil, err
	}
	hosts, err := ck.acmeHosts(root, user, argv, env)
	if err != nil {
		return nil, err
	}
	out, stop, err := ck.start(root, user, argv, env)
	if err != nil {
		return nil, err
	}
	defer stop()
	if out.exited != nil {
		return nil, fmt.Errorf("%v:\n%s", out.exited, out.logs)
	}
	if strings.Contains(out.logs.String(), "extended CONNECT is off") {
		return nil, fmt.Errorf("WebSockets over HTTP/2 are off in the image:\n%s", out.logs)
	}
	tlsPort, redirectPort := portOf(out.tls), portOf(out.redirect)
	if len(c.Ports) == 0 {
		return nil, fmt.Errorf("publishes no port")
	}
	for _, p := range c.Ports {
		switch p {
		case tlsPort:
			if err := checkTLS(p); err != nil {
				return nil, fmt.Errorf("published port %s, the TLS listener: %v", p, err)
			}
			report = append(report, fmt.Sprintf(":%s (published): the TLS listener answers TLS", p))
		case redirectPort:
			what, err := checkRedirect(p, tlsPort, hosts, out.logs.String)
			if err != nil {
				return nil, fmt.Errorf("published port %s, the redirect listener: %v", p, err)
			}
			report = append(report, fmt.Sprintf(":%s (published): the redirect listener: %s", p, what))
		default:
			return nil, fmt.Errorf("published port %s leads nowhere: the TLS listener is on %s, the redirect listener on %q", p, out.tls, out.redirect)
		}
	}
	msg, ok := ck.health(root, user, env)
	if !ok {
		return nil, fmt.Errorf("HEALTHCHECK %q failed: %s", ck.img.Healthcheck, msg)
	}
	report = append(report, fmt.Sprintf("HEALTHCHECK %q: %s", ck.img.Healthcheck, msg))
	if slices.Contains(argv, "-demo") {
		probe := exec.Command(ck.host, "probe", "-insecure", "-timeout", "5s", "wss://127.0.0.1:"+tlsPort+"/wss")
		if pout, err := probe.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("the seeds' exchange through the demo failed: %v\n%s", err, pout)
		}
		report = append(report, "wssproxy probe wss://127.0.0.1:"+tlsPort+"/wss: the seeds' exchange works")
	}
	return report, nil
}

// imageVars is the WSSPROXY_ part of env, for the report.
func imageVars(env []string) string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "WSSPROXY_") {
			out = append(out, kv)
		}
	}
	return strings.Join(out, " ")
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// guard is a check that a mistake is caught: it passes when the mistake
// fails as it should.
type guard struct {
	name  string
	check func() (string, error)
}

// guards derive from the documented containers the mistakes the image
// must catch.
func (ck *checker) guards(cs []container) []guard {
	var out []guard
	for _, c := range cs {
		if !slices.Contains(c.Ports, "443") || !hasACME(c) {
			continue
		}
		moved := c
		moved.Args = append(slices.Clone(c.Args), "-listen", ":8443")
		out = append(out, guard{
			name: c.Where + " with -listen :8443 added: the TLS listener is off the published port 443, and the HEALTHCHECK must say so",
			check: func() (string, error) {
				argv, env, user := ck.compose(moved)
				root, err := ck.prepare(moved, argv, env)
				if err != nil {
					return "", err
				}
				o, stop, err := ck.start(root, user, argv, env)
				if err != nil {
					return "", err
				}
				defer stop()
				if o.exited != nil {
					return "", fmt.Errorf("%v:\n%s", o.exited, o.logs)
				}
				msg, ok := ck.health(root, user, env)
				if ok || !strings.Contains(msg, "WSSPROXY_LISTEN") {
					return "", fmt.Errorf("HEALTHCHECK passed or did not say why: %q", msg)
				}
				return "HEALTHCHECK fails: " + msg, nil
			},
		})
		break
	}
	for _, c := range cs {
		if c.User == "" || !slices.ContainsFunc(c.Volumes, func(v volume) bool { return v.Target == "/etc/letsencrypt" }) {
			continue
		}
		asImage := c
		asImage.User = ""
		out = append(out, guard{
			name: c.Where + " without --user: certbot's files are root's alone, and the error must name the file, the uid and the ways out",
			check: func() (string, error) {
				argv, env, user := ck.compose(asImage)
				root, err := ck.prepare(asImage, argv, env)
				if err != nil {
					return "", err
				}
				o, stop, err := ck.start(root, user, argv, env)
				if err != nil {
					return "", err
				}
				defer stop()
				uid, _, _ := strings.Cut(user, ":")
				log := strings.TrimSpace(o.logs.String())
				if o.exited == nil || !strings.Contains(log, "/etc/letsencrypt/live/") || !strings.Contains(log, "permission denied: wssproxy runs as uid "+uid) || !strings.Contains(log, "--user") {
					return "", fmt.Errorf("started, or failed without saying why:\n%s", log)
				}
				if !strings.Contains(ck.docs, log) {
					return "", fmt.Errorf("the documentation does not quote the error as it is:\n%s", log)
				}
				return "refused to start, as the README quotes it: " + log, nil
			},
		})
		break
	}
	return out
}

func hasACME(c container) bool {
	if c.Env["WSSPROXY_ACME"] != "" {
		return true
	}
	return slices.ContainsFunc(c.Args, func(a string) bool { return a == "-acme" || strings.HasPrefix(a, "-acme=") })
}
