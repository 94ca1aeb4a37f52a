//go:build linux || freebsd

package proxy

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

const canAcceptQueued = true

// acceptQueued takes one connection from the socket's queue without
// waiting: false when the queue is empty (or the socket gone).
func acceptQueued(sock deadlineListener) (net.Conn, bool) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, false
	}
	nfd := -1
	// Control, not Read: Read would see the past deadline and not call.
	if rc.Control(func(fd uintptr) {
		for {
			var err error
			nfd, _, err = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != unix.EINTR && err != unix.ECONNABORTED {
				return
			}
		}
	}) != nil || nfd < 0 {
		return nil, false
	}
	f := os.NewFile(uintptr(nfd), "queued")
	defer f.Close()
	c, err := net.FileConn(f)
	return c, err == nil
}
