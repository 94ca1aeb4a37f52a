package main

import (
	"io"
	"os"
	"path/filepath"
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
// valid: container args, the ConfigMap's configuration (as -t checks it),
// exec probes that are wssproxy commands, preStop hooks that are a sleep
// or a wssproxy command, and a grace period above the sleep plus
// shutdown_timeout.
func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("../../examples/kubernetes/*.yaml")
	if len(files) < 2 {
		t.Fatalf("manifests: %v", files)
	}
	cert, _ := testutil.Cert(t)
	certFile, keyFile := testutil.WriteKeyPair(t, cert)
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
				shutdown := 30 * time.Second
				args := c.Args
				for i, a := range args { // the config comes from the ConfigMap
					if a == "/etc/wssproxy/wssproxy.toml" && i > 0 && args[i-1] == "-config" {
						src := strings.NewReplacer("/etc/wssproxy/tls/tls.crt", certFile, "/etc/wssproxy/tls/tls.key", keyFile).Replace(configs["wssproxy.toml"])
						fc, err := checkSource("configmap wssproxy.toml", src)
						if err != nil {
							t.Errorf("%s: %v", f, err)
						} else if fc.ShutdownTimeout > 0 {
							shutdown = fc.ShutdownTimeout
						}
						args = append(args[:i-1:i-1], args[i+1:]...)
					}
				}
				args = strings.Fields(strings.NewReplacer("/etc/wssproxy/tls/tls.crt", certFile, "/etc/wssproxy/tls/tls.key", keyFile).Replace(strings.Join(args, " ")))
				if _, err := parseFlags(args, io.Discard); err != nil {
					t.Errorf("%s: args %v: %v", f, args, err)
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
				} else if _, err := parseFlags(h.PreStop.Exec.Command[1:], io.Discard); err != nil {
					t.Errorf("%s: preStop %v: %v", f, h.PreStop.Exec.Command, err)
				}
				if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= sleep+shutdown {
					t.Errorf("%s: terminationGracePeriodSeconds must exceed the preStop sleep %v plus shutdown_timeout %v", f, sleep, shutdown)
				}
			}
		}
	}
}
