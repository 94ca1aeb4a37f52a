package check

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestKubernetesManifests guards examples/kubernetes: every document
// decodes strictly into Kubernetes' own API types (an unknown or misspelled
// field, or a wrong type, fails), and what wssproxy reads from them is
// valid: container args with the ConfigMap's configuration (wssproxy -t
// checks them), exec probes that are wssproxy commands, preStop hooks that
// are a sleep or a wssproxy command line, and a grace period above the
// sleep plus shutdown_timeout. The image's environment (the Dockerfile's
// ENV: WSSPROXY_LISTEN=:443, WSSPROXY_REDIRECT=:80) applies under the
// container's own env, as the kubelet composes them, and the listeners
// that result must be the ports the container declares: nothing on a port
// the pod does not expose, and none below 1024 in a pod that drops every
// capability.
func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("../*.yaml")
	if len(files) < 2 {
		t.Fatalf("manifests: %v", files)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wssproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wssproxy/wssproxy/cmd/wssproxy").CombinedOutput(); err != nil {
		t.Fatalf("go build wssproxy: %v\n%s", err, out)
	}
	imageEnv := dockerfileEnv(t)
	cert, _ := testutil.Cert(t)
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
	paths := strings.NewReplacer("/etc/wssproxy/tls/tls.crt", certFile, "/etc/wssproxy/tls/tls.key", keyFile,
		"/var/lib/wssproxy/", dir+"/")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs := map[string]string{}
		var deployments []appsv1.Deployment
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var head struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s doc %d: %v", f, i, err)
			}
			var obj any
			switch head.Kind {
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "Service":
				obj = &corev1.Service{}
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			default:
				t.Fatalf("%s doc %d: kind %q not checked", f, i, head.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s doc %d (%s): %v", f, i, head.Kind, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				deployments = append(deployments, *o)
			case *corev1.ConfigMap:
				for k, v := range o.Data {
					configs[k] = v
				}
			}
		}
		for _, d := range deployments {
			spec := d.Spec.Template.Spec
			for _, c := range spec.Containers {
				if c.Image != "wssproxy:latest" {
					continue
				}
				var args []string
				for _, a := range c.Args {
					if a == "/etc/wssproxy/wssproxy.toml" { // the config comes from the ConfigMap
						file := filepath.Join(dir, "wssproxy.toml")
						if err := os.WriteFile(file, []byte(paths.Replace(configs["wssproxy.toml"])), 0o600); err != nil {
							t.Fatal(err)
						}
						a = file
					}
					args = append(args, paths.Replace(a))
				}
				env := slices.Clone(imageEnv)
				for _, e := range c.Env {
					env = append(env, e.Name+"="+e.Value) // later wins, as the container's env over the image's
				}
				shutdown := 30 * time.Second
				out, err := run(bin, env, append([]string{"-print-config"}, args...)...)
				if err != nil {
					t.Errorf("%s: wssproxy -print-config %v: %v\n%s", f, args, err, out)
				} else if m := regexp.MustCompile(`(?m)^shutdown_timeout = "([^"]+)"`).FindSubmatch(out); m != nil {
					if shutdown, err = time.ParseDuration(string(m[1])); err != nil {
						t.Errorf("%s: shutdown_timeout %q: %v", f, m[1], err)
					}
				}
				// Every listener on a port the container declares.
				var declared []string
				for _, p := range c.Ports {
					declared = append(declared, fmt.Sprint(p.ContainerPort))
				}
				for _, l := range regexp.MustCompile(`(?m)^(listen|\[redirect\]\n\s+listen) = "([^"]*)"`).FindAllSubmatch(out, -1) {
					_, port, _ := net.SplitHostPort(string(l[2]))
					key := "listen"
					if bytes.HasPrefix(l[1], []byte("[redirect]")) {
						key = "redirect.listen"
					}
					if !slices.Contains(declared, port) {
						t.Errorf("%s: %s = %q: not a port the container declares (%v); the image's environment sets WSSPROXY_LISTEN=:443 and WSSPROXY_REDIRECT=:80", f, key, l[2], declared)
					}
				}
				// -t binds what it checks: on ports of its own here.
				check := append([]string{"-t"}, args...)
				check = append(check, "-listen=127.0.0.1:0")
				if bytes.Contains(out, []byte("[redirect]")) {
					check = append(check, "-redirect=127.0.0.1:0")
				}
				if out, err := run(bin, env, check...); err != nil {
					t.Errorf("%s: wssproxy %v: %v\n%s", f, check, err, out)
				}
				for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
					if p == nil || p.Exec == nil || len(p.Exec.Command) < 2 || p.Exec.Command[0] != "/wssproxy" || p.Exec.Command[1] != "health" {
						t.Errorf("%s: probes must exec /wssproxy health (the admin listener is loopback-only): %+v", f, p)
					}
				}
				var sleep time.Duration // before SIGTERM starts the drain
				if h := c.Lifecycle; h != nil && h.PreStop != nil && h.PreStop.Sleep != nil {
					sleep = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
				} else if h == nil || h.PreStop == nil || h.PreStop.Exec == nil {
					t.Errorf("%s: no preStop: a sleep while balancers stop sending, or the drain", f)
				} else if cmd := h.PreStop.Exec.Command; len(cmd) < 1 || cmd[0] != "/wssproxy" {
					t.Errorf("%s: preStop %v is not a wssproxy command", f, cmd)
				} else if out, err := run(bin, env, append(cmd[1:len(cmd):len(cmd)], "-h")...); err != nil {
					// -h after the hook's flags: they parse, and nothing is signalled.
					t.Errorf("%s: preStop %v: %v\n%s", f, cmd, err, out)
				}
				if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= sleep+shutdown {
					t.Errorf("%s: terminationGracePeriodSeconds must exceed the preStop sleep %v plus shutdown_timeout %v", f, sleep, shutdown)
				}
			}
		}
	}
}

// run runs wssproxy with args, with env added to this environment, and
// returns its stdout and stderr.
func run(bin string, env []string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// dockerfileEnv is the image's environment: the ENV lines of the
// Dockerfile's final stage.
func dockerfileEnv(t *testing.T) []string {
	df, err := os.ReadFile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	final := df[bytes.LastIndex(df, []byte("\nFROM "))+1:] // the final stage's
	var env []string
	for _, m := range regexp.MustCompile(`(?m)^ENV (\S+=\S*)$`).FindAllSubmatch(final, -1) {
		env = append(env, string(m[1]))
	}
	if len(env) == 0 {
		t.Fatal("the Dockerfile sets no ENV")
	}
	return env
}
