package importconf

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wssproxy/wssproxy/internal/cli"
)

// Run is `wssproxy import [-o FILE] FILE`: an nginx or Apache httpd
// configuration translated into wssproxy's TOML, on stdout or into -o's
// file, with one line on stderr for each thing changed or dropped.
func Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy import", flag.ContinueOnError)
	out := fs.String("o", "", "write the configuration to `file` (and full certificate chains beside it) instead of stdout")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: wssproxy import [-o FILE] nginx.conf|httpd.conf\n\nTranslates an nginx or Apache httpd configuration into wssproxy's TOML; what\nchanged or was dropped is listed on stderr, with file and line.")
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
	var opts Options
	if *out != "" {
		opts.OutDir = filepath.Dir(*out)
	}
	res, err := Import(files[0], opts)
	if res != nil {
		for _, n := range res.Notes {
			fmt.Fprintln(stderr, n)
		}
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
	for _, f := range res.Files {
		p := filepath.Join(opts.OutDir, f.Name)
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		fmt.Fprintf(stderr, "wssproxy import: wrote %s\n", p)
	}
	if err := os.WriteFile(*out, res.TOML, 0o644); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	fmt.Fprintf(stderr, "wssproxy import: wrote %s (check it: wssproxy -t -config %s)\n", *out, *out)
	return nil
}
