//go:build !linux

package sockio

import (
	"net"
	"runtime"
	"time"
)

// The raw engine is Linux's (raw_linux.go): elsewhere every side is
// portable, and there is no poller.
type poller struct{}

func newPoller(time.Duration) (*poller, string) {
	return nil, "the raw engine is Linux only (" + runtime.GOOS + ")"
}

func (*poller) conn(net.Conn) Conn { return nil }
func (*poller) stats() Stats       { return Stats{} }
func (*poller) close() error       { return nil }
