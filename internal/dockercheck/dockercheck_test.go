//go:build linux

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// TestCompose guards how a container's process is composed, as Docker
// does it: arguments after the image name replace CMD and follow
// ENTRYPOINT; with none, CMD follows; -e wins over ENV; --user over USER,
// with group 0 when only a uid is given. That rule is what let a CMD
// default (-listen :443) vanish under the documented arguments.
func TestCompose(t *testing.T) {
	t.Parallel()
	img := &image{Entrypoint: []string{"/wssproxy"}, Cmd: []string{"-listen", ":443"},
		Env: map[string]string{"WSSPROXY_LISTEN": ":443"}, EnvOrder: []string{"WSSPROXY_LISTEN"}, User: "65532:65532"}
	ck := &checker{img: img}
	for _, tc := range []struct {
		name     string
		c        container
		argv     []string
		env      string
		user     string
		hasEnvOf string
	}{
		{"no arguments: CMD", container{}, []string{"/wssproxy", "-listen", ":443"}, "WSSPROXY_LISTEN=:443", "65532:65532", ""},
		{"arguments replace CMD", container{Args: []string{"-route", "/wss=ws://b:1"}}, []string{"/wssproxy", "-route", "/wss=ws://b:1"}, "WSSPROXY_LISTEN=:443", "65532:65532", ""},
		{"-e over ENV, --user over USER", container{Env: map[string]string{"WSSPROXY_LISTEN": ":8443"}, User: "0"}, []string{"/wssproxy", "-listen", ":443"}, "WSSPROXY_LISTEN=:8443", "0:0", ""},
	} {
		argv, env, user := ck.compose(tc.c)
		if !slices.Equal(argv, tc.argv) || !slices.Contains(env, tc.env) || user != tc.user || !slices.Contains(env, "PATH="+dockerPath) {
			t.Errorf("%s: %q %q %q", tc.name, argv, env, user)
		}
	}
}

// TestDocumentedRuns guards the reading of documented commands: code
// blocks only in Markdown, continued lines joined (in a Dockerfile's
// comments too), shell quoting, docker run's options up to the image, and
// images other than wssproxy's left alone; an option the check does not
// reproduce, or a shell expansion, is an error rather than a line skipped.
func TestDocumentedRuns(t *testing.T) {
	t.Parallel()
	md := "Run `docker run wssproxy -route …` in prose.\n\n```sh\n" +
		"# ACME\n" +
		"docker run -d -p 443:443 -p 127.0.0.1:80:80/tcp -v acme:/var/lib/wssproxy -e 'WSSPROXY_ROUTE=/a=ws://h:1 /b=ws://h:2' \\\n" +
		"  --user 0:0 -v /etc/letsencrypt:/etc/letsencrypt:ro ghcr.io/wssproxy/wssproxy:v0.1.0 -acme \"chat.example.com\" # comment\n" +
		"docker run --rm certbot/certbot renew\n```\n"
	got, err := dockerRuns("README.md", codeBlocks(md))
	if err != nil {
		t.Fatal(err)
	}
	want := []container{{
		Where: "README.md:5",
		Line:  "docker run -d -p 443:443 -p 127.0.0.1:80:80/tcp -v acme:/var/lib/wssproxy -e 'WSSPROXY_ROUTE=/a=ws://h:1 /b=ws://h:2' --user 0:0 -v /etc/letsencrypt:/etc/letsencrypt:ro ghcr.io/wssproxy/wssproxy:v0.1.0 -acme \"chat.example.com\" # comment",
		Args:  []string{"-acme", "chat.example.com"},
		Env:   map[string]string{"WSSPROXY_ROUTE": "/a=ws://h:1 /b=ws://h:2"},
		User:  "0:0",
		Ports: []string{"443", "80"},
		Volumes: []volume{{Source: "acme", Target: "/var/lib/wssproxy", Named: true},
			{Source: "/etc/letsencrypt", Target: "/etc/letsencrypt"}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	dockerfile := "#   docker run -p 443:443 wssproxy \\\n#     -route /wss=ws://b:1\nFROM scratch\n"
	if got, err := dockerRuns("Dockerfile", dockerfile); err != nil || len(got) != 1 || !slices.Equal(got[0].Args, []string{"-route", "/wss=ws://b:1"}) {
		t.Errorf("Dockerfile comment: %+v %v", got, err)
	}
	for _, bad := range []string{
		"docker run --privileged wssproxy",
		"docker run -v $PWD/c.toml:/c.toml wssproxy -config /c.toml",
		"docker run -e WSSPROXY_ACME wssproxy",
		"docker run --health-cmd true wssproxy",
	} {
		if _, err := dockerRuns("x.md", bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestComposeFile guards the reading of compose services: the one built
// from the Dockerfile (or running an image named wssproxy), with its
// command, environment (map or list), user, ports and volumes; other
// services are left alone.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	yml := `services:
  backend:
    image: your/ws-backend:latest
    expose:
      - "8282"
  wssproxy:
    build: ..   # this repository
    command:
      - -acme=chat.example.com
      - "-acme-accept-tos"
    environment:
      WSSPROXY_ROUTE: "/wss=ws://backend:8282"
    ports:
      - "443:443"
      - 80:80
    volumes:
      - wssproxy-acme:/var/lib/wssproxy
volumes:
  wssproxy-acme:
`
	got, err := composeServices("c.yml", yml)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Where != "c.yml:6" || !slices.Equal(got[0].Args, []string{"-acme=chat.example.com", "-acme-accept-tos"}) ||
		got[0].Env["WSSPROXY_ROUTE"] != "/wss=ws://backend:8282" || !slices.Equal(got[0].Ports, []string{"443", "80"}) ||
		len(got[0].Volumes) != 1 || !got[0].Volumes[0].Named {
		t.Errorf("%+v", got)
	}
	if _, err := composeServices("c.yml", "services:\n  w:\n    build: .\n    command: [-acme, x]\n"); err == nil {
		t.Error("a flow-style command accepted")
	}
}

// TestRepositoryDockerfile guards the Dockerfile as the check reads it:
// an exec-form ENTRYPOINT, no CMD, the defaults in ENV, a HEALTHCHECK.
func TestRepositoryDockerfile(t *testing.T) {
	t.Parallel()
	img, err := parseDockerfile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Entrypoint, []string{"/wssproxy"}) || img.Cmd != nil || img.Env["WSSPROXY_LISTEN"] != ":443" ||
		img.Env["WSSPROXY_REDIRECT"] != ":80" || len(img.Healthcheck) == 0 || img.User == "" {
		t.Errorf("%+v", img)
	}
	if _, err := os.Stat(filepath.Join("..", "..", ".dockerignore")); err != nil {
		t.Error(err)
	}
}
