package importconf

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/wssproxy/wssproxy/internal/cli"
)

// Run is `wssproxy import [-o FILE [-f]] FILE`: an nginx or Apache httpd
// configuration translated into wssproxy's TOML, on stdout or into -o's
// file, with one line on stderr for each thing changed or dropped.
func Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy import", flag.ContinueOnError)
	out := fs.String("o", "", "write the configuration to `file` (and full certificate chains beside it) instead of stdout:\nnew files of mode 0600, never over an existing file")
	force := fs.Bool("f", false, "with -o, replace files that exist (a symlink is replaced, not followed)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy import [-o FILE [-f]] nginx.conf|httpd.conf\n\nTranslates an nginx or Apache httpd configuration into wssproxy's TOML; what\n"+
			"changed or was dropped is listed on stderr, with file and line. Input beyond\nthese bounds is refused: %s a file; %s, %d files and %d\ndirectives in all; includes %d deep; blocks %d deep; %d routes.\n\n",
			mib(maxFileBytes), mib(maxTotalBytes), maxFiles, maxDirectives, maxIncludeDepth, maxBlockDepth, maxRoutes)
		fs.PrintDefaults()
	}
	var files []string
	for { // flags may come before or after the file
		if err := cli.ParseArgs(fs, args, stdout); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) != 1 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("import takes one configuration file, got %d", len(files))}
	}
	if *force && *out == "" {
		return &cli.UsageError{Cmd: fs.Name(), Err: errors.New("-f replaces the files -o writes: it needs -o")}
	}
	var opts Options
	if *out != "" {
		opts.OutDir = filepath.Dir(*out)
	}
	res, err := Import(files[0], opts)
	if res != nil {
		w := bufio.NewWriter(stderr) // a write per note is a system call per note
		for _, n := range res.Notes {
			fmt.Fprintln(w, n)
		}
		w.Flush()
	}
	switch {
	case errors.Is(err, ErrNothingRoutable):
		fmt.Fprintf(stderr, "wssproxy import: nothing routable in %s: no TLS server block or virtual host with a proxy_pass, ProxyPass, root or DocumentRoot\n", files[0])
		return &cli.ExitError{Code: 1}
	case err != nil:
		fmt.Fprintln(stderr, "wssproxy import:", err)
		return &cli.ExitError{Code: 1}
	}
	if *out == "" {
		_, err := stdout.Write(res.TOML)
		return err
	}
	outs := append(res.Files, OutFile{Name: filepath.Base(*out), Data: res.TOML})
	var paths []string
	for i, f := range outs {
		if i < len(res.Files) && f.Name == filepath.Base(*out) {
			fmt.Fprintf(stderr, "wssproxy import: -o %s: the full chain beside it has that name: choose another\n", *out)
			return &cli.ExitError{Code: 1}
		}
		paths = append(paths, filepath.Join(opts.OutDir, f.Name))
	}
	if err := refuseExisting(paths); err != nil && !*force {
		fmt.Fprintln(stderr, "wssproxy import:", strings.ReplaceAll(err.Error(), "\n", "\nwssproxy import: "))
		return &cli.ExitError{Code: 1}
	}
	for i, f := range outs {
		if err := writeFile(paths[i], f.Data, *force); err != nil {
			fmt.Fprintln(stderr, "wssproxy import:", err)
			return &cli.ExitError{Code: 1}
		}
		if i < len(res.Files) {
			fmt.Fprintf(stderr, "wssproxy import: wrote %s\n", paths[i])
		}
	}
	fmt.Fprintf(stderr, "wssproxy import: wrote %s (check it: wssproxy -t -config %s)\n", *out, *out)
	return nil
}
