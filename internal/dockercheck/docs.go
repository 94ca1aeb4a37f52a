//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// container is one documented way of running the image: a `docker run`
// line, or a compose service built from the Dockerfile.
type container struct {
	Where      string            // "README.md:47"
	Line       string            // the command as documented, on one line
	Args       []string          // after the image name; compose's command
	Env        map[string]string // -e, compose's environment
	User       string            // --user; "" for the image's USER
	Ports      []string          // container ports published: "443"
	Volumes    []volume          // -v, compose's volumes
	Entrypoint []string          // --entrypoint; nil for the image's
}

// volume is a -v mount: a named volume, or a bind mount of a host path.
type volume struct {
	Source, Target string
	Named          bool // a named volume: starts with the image's content there
}

// findContainers reads the documentation files under root for the ways
// they run the image: every `docker run` of an image named wssproxy, in
// Markdown, comments and text (a line that is, or whose comment or
// prompt is followed by, `docker run`), and each compose service built
// from the Dockerfile. A documented command the check cannot reproduce is
// an error, so nothing documented goes unchecked.
func findContainers(root string, files []string) ([]container, error) {
	var out []container
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		text := string(data)
		if strings.HasSuffix(f, ".md") {
			text = codeBlocks(text)
		}
		runs, err := dockerRuns(f, text)
		if err != nil {
			return nil, err
		}
		out = append(out, runs...)
		if isCompose(string(data)) {
			cs, err := composeServices(f, string(data))
			if err != nil {
				return nil, err
			}
			out = append(out, cs...)
		}
	}
	return out, nil
}

// codeBlocks blanks every line of Markdown outside fenced code blocks,
// keeping line numbers: a command in prose (`docker run wssproxy -route …`)
// is a mention, not one to run.
func codeBlocks(md string) string {
	lines := strings.Split(md, "\n")
	in := false
	for i, l := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(l), "```")
		if fence {
			in = !in
		}
		if fence || !in {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// dockerRuns finds the `docker run` commands in text, joining lines
// continued with a backslash.
func dockerRuns(file, text string) ([]container, error) {
	var out []container
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		cmd, ok := runCommand(lines[i])
		if !ok {
			continue
		}
		start := i + 1
		for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			next = strings.TrimSpace(strings.TrimPrefix(next, "#")) // a Dockerfile comment's continuation
			cmd = strings.TrimSuffix(cmd, "\\") + " " + next
		}
		where := fmt.Sprintf("%s:%d", file, start)
		words, err := shellWords(cmd)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", where, cmd, err)
		}
		c, isOurs, err := parseDockerRun(words[2:])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", where, cmd, err)
		}
		if !isOurs {
			continue
		}
		c.Where, c.Line = where, strings.Join(strings.Fields(cmd), " ")
		out = append(out, c)
	}
	return out, nil
}

// runCommand returns the `docker run …` a line holds: at its start, or
// after a comment mark or a shell prompt.
func runCommand(line string) (string, bool) {
	s := strings.TrimSpace(line)
	for _, p := range []string{"#", "$", ">"} {
		s = strings.TrimSpace(strings.TrimPrefix(s, p))
	}
	s = strings.Trim(s, "`")
	if !strings.HasPrefix(s, "docker run ") {
		return "", false
	}
	return s, true
}

// shellWords splits a command line as a POSIX shell would, for the quoting
// documentation uses: single and double quotes, backslash escapes, and a
// comment from an unquoted #. Expansions ($VAR, $(…), `…`) are refused:
// the check could not know what they stand for.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			i = len(s)
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '$' || s[i] == '`' {
					return nil, fmt.Errorf("a shell expansion (%q): write the value itself", s[i:])
				}
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf(`unclosed "`)
			}
			inWord = true
		case c == '$' || c == '`':
			return nil, fmt.Errorf("a shell expansion (%q): write the value itself", s[i:])
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// Options of docker run that the documentation may use: those taking a
// value, and those that do not. Any other is an error, so that a
// documented line never carries one the check does not reproduce.
var (
	valueOptions = []string{"-p", "--publish", "-v", "--volume", "-e", "--env", "-u", "--user", "--name",
		"--restart", "--entrypoint", "--sysctl", "--cap-add", "--network", "--health-cmd"}
	flagOptions = []string{"-d", "--detach", "--rm", "-i", "-t", "-it", "--init", "--read-only"}
)

// parseDockerRun reads docker run's options and, after the image, the
// arguments. isOurs is false for an image other than wssproxy's.
func parseDockerRun(words []string) (c container, isOurs bool, err error) {
	c.Env = map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			image := w
			name := image
			if j := strings.LastIndexByte(name, '/'); j >= 0 {
				name = name[j+1:]
			}
			name, _, _ = strings.Cut(name, ":")
			name, _, _ = strings.Cut(name, "@")
			if name != "wssproxy" {
				return c, false, nil
			}
			c.Args = slices.Clone(words[i+1:])
			return c, true, nil
		}
		opt, val, hasVal := strings.Cut(w, "=")
		switch {
		case slices.Contains(flagOptions, opt):
			continue
		case !slices.Contains(valueOptions, opt):
			return c, false, fmt.Errorf("docker run option %s: not one the check reproduces", opt)
		case !hasVal:
			if i+1 == len(words) {
				return c, false, fmt.Errorf("%s without its value", opt)
			}
			i++
			val = words[i]
		}
		switch opt {
		case "-p", "--publish":
			ctr := val[strings.LastIndexByte(val, ':')+1:] // [IP:]HOST:CONTAINER, or CONTAINER
			ctr, _, _ = strings.Cut(ctr, "/")              // 443/tcp
			c.Ports = append(c.Ports, ctr)
		case "-v", "--volume":
			v, err := parseVolume(val)
			if err != nil {
				return c, false, err
			}
			c.Volumes = append(c.Volumes, v)
		case "-e", "--env":
			k, v, ok := strings.Cut(val, "=")
			if !ok {
				return c, false, fmt.Errorf("-e %s: write -e KEY=VALUE (the check cannot see the host's environment)", val)
			}
			c.Env[k] = v
		case "-u", "--user":
			c.User = val
		case "--entrypoint":
			c.Entrypoint = []string{val}
		case "--health-cmd":
			return c, false, fmt.Errorf("--health-cmd: the check runs the image's HEALTHCHECK")
		}
	}
	return c, false, fmt.Errorf("no image")
}

// parseVolume reads -v SOURCE:TARGET[:ro].
func parseVolume(val string) (volume, error) {
	parts := strings.Split(val, ":")
	if len(parts) < 2 || len(parts) > 3 || !strings.HasPrefix(parts[1], "/") {
		return volume{}, fmt.Errorf("-v %s: want SOURCE:/path[:ro]", val)
	}
	return volume{Source: parts[0], Target: parts[1], Named: !strings.ContainsAny(parts[0], "/.")}, nil
}

// isCompose reports whether text is a compose file: a top-level services:.
func isCompose(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimRight(l, " ") == "services:" {
			return true
		}
	}
	return false
}

// composeServices reads the services of a compose file that are built
// from the Dockerfile (build:) or run an image named wssproxy, with the
// keys a container's process depends on: command, environment, user,
// ports, volumes, entrypoint. It reads the block style compose files are
// written in (maps by indentation, lists of "- item"); anything else
// under such a service is an error.
func composeServices(file, text string) ([]container, error) {
	type service struct {
		c         container
		ours      bool
		indent    int // of its name
		keyIndent int // of its keys; 0 until the first
	}
	var out []container
	var svc *service
	var key string // the service key whose block is being read
	flush := func() {
		if svc != nil && svc.ours {
			out = append(out, svc.c)
		}
		svc = nil
	}
	lines := strings.Split(text, "\n")
	inServices := false
	for n, raw := range lines {
		line := stripComment(raw)
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		item := strings.TrimSpace(line)
		where := fmt.Sprintf("%s:%d", file, n+1)
		switch {
		case indent == 0:
			flush()
			inServices = item == "services:"
		case !inServices:
		case svc == nil || indent <= svc.indent:
			flush()
			key = ""
			name, _, _ := strings.Cut(item, ":")
			svc = &service{indent: indent, c: container{Where: where, Line: "compose service " + name, Env: map[string]string{}}}
		case !strings.HasPrefix(item, "- ") && (svc.keyIndent == 0 || indent == svc.keyIndent):
			svc.keyIndent = indent
			k, v, _ := strings.Cut(item, ":")
			key, v = k, unquote(strings.TrimSpace(v))
			switch k {
			case "build":
				svc.ours = true
			case "image":
				name := v[strings.LastIndexByte(v, '/')+1:]
				name, _, _ = strings.Cut(name, ":")
				svc.ours = svc.ours || name == "wssproxy"
			case "user":
				svc.c.User = v
			case "command", "entrypoint", "environment", "ports", "volumes":
				if v != "" {
					return nil, fmt.Errorf("%s: %s: write it as a block (one item a line), which the check reads", where, k)
				}
			}
		default: // an item of key's block
			switch key {
			case "command", "entrypoint", "ports", "volumes":
				v, ok := strings.CutPrefix(item, "- ")
				if !ok {
					return nil, fmt.Errorf("%s: %s: want a list item, got %q", where, key, item)
				}
				v = unquote(strings.TrimSpace(v))
				switch key {
				case "command":
					svc.c.Args = append(svc.c.Args, v)
				case "entrypoint":
					svc.c.Entrypoint = append(svc.c.Entrypoint, v)
				case "ports":
					ctr := v[strings.LastIndexByte(v, ':')+1:]
					ctr, _, _ = strings.Cut(ctr, "/")
					svc.c.Ports = append(svc.c.Ports, ctr)
				case "volumes":
					vol, err := parseVolume(v)
					if err != nil {
						return nil, fmt.Errorf("%s: %v", where, err)
					}
					svc.c.Volumes = append(svc.c.Volumes, vol)
				}
			case "environment":
				k, v, ok := strings.Cut(item, ":")
				if kv, isItem := strings.CutPrefix(item, "- "); isItem {
					k, v, ok = strings.Cut(kv, "=")
				}
				if !ok {
					return nil, fmt.Errorf("%s: environment: want KEY: value, got %q", where, item)
				}
				svc.c.Env[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
			}
		}
	}
	flush()
	for i := range out {
		out[i].Line = fmt.Sprintf("%s: command %q, environment %v", out[i].Line, out[i].Args, out[i].Env)
	}
	return out, nil
}

// stripComment removes a YAML comment: from a # at the start of the line
// or after a space, outside quotes.
func stripComment(line string) string {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' '):
			return strings.TrimRight(line[:i], " ")
		}
	}
	return line
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
