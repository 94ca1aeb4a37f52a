// Package cli is what every wssproxy command shares on its command line:
// flag parsing with a -h that exits 0, the two errors main turns into exit
// codes, and -version's line. The commands in other packages (internal/probe) use it so
// that they behave as the ones in cmd/wssproxy do.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/wssproxy/wssproxy/internal/suggest"
)

// UsageError is a command line that cannot run: a bad flag, a missing
// argument, flags that do not go together.
type UsageError struct {
	Cmd string // "wssproxy", "wssproxy probe"
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitError ends the process with Code; its message is already printed.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ParseArgs parses args with fs the way every wssproxy command does: -h
// prints fs.Usage to stdout and returns flag.ErrHelp (exit 0); a bad flag
// returns a *UsageError, which main prints as one line and a hint, instead
// of the flag package's usage and the error twice.
func ParseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	if err != nil {
		return &UsageError{Cmd: fs.Name(), Err: withSuggestion(fs, err)}
	}
	return nil
}

// ParseFlagsOnly is ParseArgs for a command that takes flags and no
// other arguments: one left over is a *UsageError naming it.
func ParseFlagsOnly(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := ParseArgs(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// withSuggestion adds to the flag package's "flag provided but not
// defined: -lsten" the flag it was meant to be: " (did you mean -listen?)".
func withSuggestion(fs *flag.FlagSet, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if near := suggest.Nearest(names, strings.TrimPrefix(name, "-")); near != "" {
		return fmt.Errorf("%w (did you mean -%s?)", err, near)
	}
	return err
}
