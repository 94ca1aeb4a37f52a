package sockio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// readFD and writeFD are read(2) and write(2) on a non-blocking socket
// (net's sockets are: TestSocketsAreNonblocking), made without telling
// the scheduler: neither can block, and a system call the scheduler knows
// of, if it takes a while (a loopback write runs the receiver's TCP input
// too), gets its P handed to another thread by sysmon, which costs two
// context switches (examples/bench/PERFORMANCE.md: proxy CPU per 32 B
// message -10%, sysmon's sleeps 5 times fewer).
func readFD(fd int, p []byte) (int, error) {
	return rawIO(unix.SYS_READ, fd, p)
}

func writeFD(fd int, p []byte) (int, error) {
	return rawIO(unix.SYS_WRITE, fd, p)
}

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}
