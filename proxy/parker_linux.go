package proxy

import (
	"sync"
	"syscall"
)

// The parker: one epoll instance and the goroutine that waits on it. Each
// parked socket is registered one-shot (EPOLLONESHOT), with a token of its
// own rather than its descriptor number, which a closed socket's
// successor could reuse. A registration is made when a side parks and
// dropped when it is taken back; a socket closed while registered leaves
// the epoll set by itself.
//
// It starts with the package, so that the descriptor and the goroutine
// are there before anything is measured or checked for leaks.
var parker struct {
	once  sync.Once
	epfd  int
	ok    bool
	mu    sync.Mutex
	sides map[int32]*side // token -> parked side
	next  int32
}

func init() { parkingWorks() }

func parkingWorks() bool {
	parker.once.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		parker.epfd, parker.ok = fd, true
		parker.sides = make(map[int32]*side)
		go parkerLoop()
	})
	return parker.ok
}

// watch registers s's socket; false if that failed (the socket is closed).
func watch(s *side) bool {
	parker.mu.Lock()
	parker.next++
	if parker.next <= 0 {
		parker.next = 1
	}
	tok := parker.next
	parker.sides[tok] = s
	s.parkTok = tok
	parker.mu.Unlock()
	var err error
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: tok}
	cerr := s.rd.raw.Control(func(fd uintptr) {
		// Control holds the descriptor: it cannot be closed (and reused)
		// meanwhile.
		err = syscall.EpollCtl(parker.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		if err == syscall.ENOENT {
			err = syscall.EpollCtl(parker.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if cerr != nil || err != nil {
		forget(tok)
		return false
	}
	return true
}

// unwatch drops s's registration: its token leaves the table, and the
// one-shot registration, if it has not fired, can fire no more for it.
func unwatch(s *side) {
	parker.mu.Lock()
	delete(parker.sides, s.parkTok)
	parker.mu.Unlock()
}

func forget(tok int32) {
	parker.mu.Lock()
	delete(parker.sides, tok)
	parker.mu.Unlock()
}

func parkerLoop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(parker.epfd, events, -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			parker.mu.Lock()
			s := parker.sides[ev.Fd]
			delete(parker.sides, ev.Fd)
			parker.mu.Unlock()
			if s != nil && s.park.CompareAndSwap(parked, running) {
				go s.t.pumpLoop(s)
			}
		}
	}
}

// forEachParked calls f for each parked side (for tests and metrics).
func forEachParked(f func(*side)) {
	parker.mu.Lock()
	defer parker.mu.Unlock()
	for _, s := range parker.sides {
		f(s)
	}
}
