package control

import (
	"errors"
	"fmt"
)

// notify delivers nothing: Windows has no SIGHUP, SIGUSR1 or SIGUSR2 (Go
// turns console events into SIGINT and SIGTERM, which are main's).
func notify() *Signals { return &Signals{stop: func() {}} }

// supported refuses every -s action: each sends a Unix signal to the
// process in pid_file, and Windows has none to send. Ctrl-C in its
// console stops the process with a drain (os.Interrupt, main's).
func supported(action string) error {
	return fmt.Errorf("-s %s: not supported on windows: it sends a Unix signal: %w", action, errors.ErrUnsupported)
}

func kill(int, string) error { return errors.ErrUnsupported }
