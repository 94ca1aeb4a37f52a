package handover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
)

// Windows passes no descriptors to a child process (exec's ExtraFiles);
// a socket would need WSADuplicateSocket and a way to send its
// description, which is not done here. Start says so at once.
var errUnsupported = fmt.Errorf("handover: binary upgrade is not supported on windows: %w", errors.ErrUnsupported)

func supported() error { return errUnsupported }

func dupListener(*net.TCPListener) (*os.File, error) { return nil, errUnsupported }

func ownGroup(*exec.Cmd) {}

func killGroup(p *os.Process) { p.Kill() }
