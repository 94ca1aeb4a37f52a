//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// image is what a Dockerfile's final stage says about running it: the
// parts Docker composes a container's process from.
type image struct {
	From        []string          // each stage's FROM line, as written
	Entrypoint  []string          // exec form
	Cmd         []string          // exec form; nil when there is none
	Env         map[string]string // ENV of the final stage
	EnvOrder    []string
	User        string // USER, "65532:65532"
	Expose      []string
	Healthcheck []string // HEALTHCHECK's CMD, exec form
	Runs        []string // RUN commands of every stage, as written
	Copies      []string // the final stage's COPY --from sources
}

// parseDockerfile reads the instructions of the Dockerfile at path that
// running the image depends on. Instructions are joined across
// backslash-continued lines; comments are skipped; exec-form arrays are
// JSON, as Docker reads them. Shell forms of ENTRYPOINT, CMD and
// HEALTHCHECK are refused: they run /bin/sh, which the image does not have.
func parseDockerfile(path string) (*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img := &image{Env: map[string]string{}}
	var insts []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		insts = append(insts, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	exec := func(inst, arg string) ([]string, error) {
		var v []string
		if err := json.Unmarshal([]byte(arg), &v); err != nil {
			return nil, fmt.Errorf("%s %s: not the exec form (a JSON array): the image has no shell", inst, arg)
		}
		return v, nil
	}
	for _, inst := range insts {
		name, arg, _ := strings.Cut(inst, " ")
		arg = strings.TrimSpace(arg)
		switch strings.ToUpper(name) {
		case "FROM":
			img.From = append(img.From, arg)
			// A new stage: what the final one says is what counts.
			img.Env, img.EnvOrder, img.Entrypoint, img.Cmd, img.User, img.Expose, img.Healthcheck, img.Copies =
				map[string]string{}, nil, nil, nil, "", nil, nil, nil
		case "RUN":
			img.Runs = append(img.Runs, arg)
		case "ENTRYPOINT":
			if img.Entrypoint, err = exec(name, arg); err != nil {
				return nil, err
			}
		case "CMD":
			if img.Cmd, err = exec(name, arg); err != nil {
				return nil, err
			}
		case "ENV":
			for _, kv := range strings.Fields(arg) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("ENV %s: write ENV KEY=VALUE", arg)
				}
				if _, seen := img.Env[k]; !seen {
					img.EnvOrder = append(img.EnvOrder, k)
				}
				img.Env[k] = strings.Trim(v, `"`)
			}
		case "USER":
			img.User = arg
		case "EXPOSE":
			img.Expose = append(img.Expose, strings.Fields(arg)...)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(arg, "CMD ")
			if !ok {
				return nil, fmt.Errorf("HEALTHCHECK %s: no CMD", arg)
			}
			if img.Healthcheck, err = exec(name, strings.TrimSpace(cmd)); err != nil {
				return nil, err
			}
		case "COPY":
			fields := strings.Fields(arg)
			if len(fields) >= 2 && strings.HasPrefix(fields[0], "--from=") {
				img.Copies = append(img.Copies, fields[len(fields)-2])
			}
		}
	}
	if len(img.Entrypoint) == 0 {
		return nil, fmt.Errorf("%s: no ENTRYPOINT", path)
	}
	return img, nil
}
