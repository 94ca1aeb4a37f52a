package sockio

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The poller: an Engine's epoll instance and the goroutine that reads its
// events. The epoll descriptor is itself watched by the runtime's poller
// (os.NewFile of a non-blocking descriptor): the goroutine waits like any
// other reader, and closing the file ends it.
//
// Every raw side is registered from the moment it is made until its
// socket is closed, with a token of its own (64 bits, never one in use:
// a closed socket's descriptor number is reused, a token is not):
//
//   - While its pump runs: EPOLLRDHUP, edge-triggered (EPOLLERR and
//     EPOLLHUP are always reported). This is the event for an end of
//     stream, or an error, that arrived together with the last data: the
//     runtime's wake-up for both was the data's, the read that came back
//     short took the data, and the read that would return the end is the
//     one the pump skips (raw_linux.go). The kernel queues the event when
//     the FIN or the reset arrives, and at registration if it already
//     has (TestEpollReportsEndThatCameWithData); the poller marks the
//     side as ending and wakes its pump if it waits, which then reads to
//     the end.
//   - While parked: EPOLLIN | EPOLLRDHUP, one-shot. A pump that has waited
//     a whole period of the sweep (below) gives up its goroutine; the
//     registration (a MOD of the watch), checked by the kernel when it is
//     made (TestEpollModReportsWhatCameBefore), reports the socket's first
//     data, end or error, and the poller starts a fresh
//     goroutine on the pump. Its state is in its rawConn, not on a stack.
//
// Parking is decided by one sweep per period for the whole engine (a
// timer that runs only while some pump runs): a pump found waiting and
// not woken since the sweep before is asked to park. A busy side costs
// the sweep an atomic load per period; a parked one costs nothing.
//
// One lock (mu) orders a side's park state and its registration against
// its closing, the poller's events and the sweep.
type poller struct {
	f      *os.File // the epoll descriptor
	rc     syscall.RawConn
	epfd   int
	period time.Duration
	done   chan struct{} // closed when the event loop has returned

	mu     sync.Mutex
	conns  map[uint64]*rawConn // registered: open raw sides
	next   uint64              // the last token given
	active []*rawConn          // sides whose pump runs: the sweep's
	parked int
	armed  bool // the sweep's timer is set
	timer  *time.Timer
	closed bool
}

// Park states of a rawConn (under poller.mu).
const (
	running int8 = iota
	parked
	gone // its socket is closed
)

const (
	watchEvents = unix.EPOLLRDHUP | unix.EPOLLET
	parkEvents  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	endEvents   = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
)

// newPoller makes an epoll instance watched by the runtime; nil and why
// when the kernel or the runtime refuses.
func newPoller(period time.Duration) (*poller, string) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, "epoll_create1: " + err.Error()
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, "epoll descriptor: " + err.Error()
	}
	f := os.NewFile(uintptr(fd), "sockio-epoll")
	// A file the runtime cannot poll has no deadlines: then a wait on it
	// would block a thread, and Close would not end it.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, "epoll descriptor not pollable by the runtime: " + err.Error()
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err.Error()
	}
	p := &poller{f: f, rc: rc, epfd: fd, period: period, done: make(chan struct{}), conns: make(map[uint64]*rawConn)}
	p.timer = time.AfterFunc(time.Hour, p.sweep)
	p.timer.Stop()
	go p.loop()
	return p, ""
}

// loop reads the poller's events until it is closed.
func (p *poller) loop() {
	defer close(p.done)
	defer p.stop() // closed, or broken: no side may stay parked
	events := make([]unix.EpollEvent, 128)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		for {
			n, werr = unix.EpollWait(int(fd), events, 0)
			if werr != unix.EINTR {
				return n > 0 || werr != nil
			}
		}
	}
	for {
		if err := p.rc.Read(wait); err != nil || werr != nil {
			return
		}
		for i := range events[:n] {
			p.dispatch(&events[i])
		}
	}
}

// dispatch hands one event to its side: a parked side is resumed; a
// running one learns that its end has come (and is woken to read it).
func (p *poller) dispatch(ev *unix.EpollEvent) {
	tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
	p.mu.Lock()
	c := p.conns[tok]
	resume := c != nil && c.state == parked
	if resume {
		p.unpark(c)
	}
	p.mu.Unlock()
	if c == nil {
		return // its socket was closed since
	}
	if ev.Events&endEvents != 0 {
		c.mustRead.Store(true)
	}
	switch {
	case resume:
		go c.resume()
	case ev.Events&endEvents != 0 && c.waiting.Load():
		c.wake()
	}
}

// register watches c's socket for its end; false if that failed (the
// side is then not raw).
func (p *poller) register(c *rawConn) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	for {
		p.next++
		if p.next != 0 && p.conns[p.next] == nil {
			break
		}
	}
	c.tok = p.next
	p.conns[c.tok] = c
	p.mu.Unlock()
	if err := p.ctl(unix.EPOLL_CTL_ADD, c, watchEvents); err != nil {
		p.mu.Lock()
		delete(p.conns, c.tok)
		c.state = gone
		p.mu.Unlock()
		return false
	}
	return true
}

// ctl changes c's registration. Both descriptors are held meanwhile, so
// neither can be closed (and its number reused) under it.
func (p *poller) ctl(op int, c *rawConn, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(c.tok)), Pad: int32(uint32(c.tok >> 32))}
	var err error
	perr := p.rc.Control(func(epfd uintptr) {
		if cerr := c.rc.Control(func(fd uintptr) { err = unix.EpollCtl(int(epfd), op, int(fd), &ev) }); cerr != nil {
			err = cerr
		}
	})
	if perr != nil {
		return perr
	}
	return err
}

// park hands c's socket to the poller: true means c's pump must end its
// goroutine now (the poller, or Close, starts another); false that it
// goes on waiting where it is.
func (p *poller) park(c *rawConn) bool {
	if testHookPark != nil {
		testHookPark(c)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || c.state != running || c.closeWanted.Load() {
		return false
	}
	if p.ctl(unix.EPOLL_CTL_MOD, c, parkEvents) != nil {
		return false
	}
	c.state = parked
	p.parked++
	p.deactivate(c)
	return true
}

// testHookPark, when a test sets it, runs as a side is about to park:
// where a Close could land before the park's check.
var testHookPark func(*rawConn)

// unpark takes c from parked to running (mu held): the caller resumes it.
func (p *poller) unpark(c *rawConn) {
	c.state = running
	p.parked--
	p.activate(c)
}

// takeParked takes c back if it is parked: true means the caller must
// resume it.
func (p *poller) takeParked(c *rawConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.state != parked {
		return false
	}
	p.unpark(c)
	return true
}

// rewatch turns a resumed side's one-shot registration back into the
// watch for its end. If that fails, the side reads to EAGAIN from now on.
func (p *poller) rewatch(c *rawConn) {
	if p.ctl(unix.EPOLL_CTL_MOD, c, watchEvents) != nil {
		c.mustRead.Store(true)
	}
}

// unregister forgets c as its socket closes (the kernel drops the
// registration with the socket); an event already read for it finds
// nothing.
func (p *poller) unregister(c *rawConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.state == gone {
		return
	}
	if c.state == parked {
		p.parked--
	}
	c.state = gone
	p.deactivate(c)
	delete(p.conns, c.tok)
}

// activate makes c's pump one the sweep looks at (mu held).
func (p *poller) activate(c *rawConn) {
	if c.idx >= 0 || c.state != running {
		return
	}
	c.idx = len(p.active)
	c.seen = c.wakes.Load() - 1 // the next sweep only takes note
	p.active = append(p.active, c)
	if !p.armed && !p.closed {
		p.armed = true
		p.timer.Reset(p.period)
	}
}

// deactivate takes c out of the sweep (mu held).
func (p *poller) deactivate(c *rawConn) {
	i := c.idx
	if i < 0 {
		return
	}
	last := p.active[len(p.active)-1]
	p.active[i], last.idx = last, i
	p.active[len(p.active)-1] = nil
	p.active = p.active[:len(p.active)-1]
	c.idx = -1
}

// sweep runs once a period while some pump runs: a pump waiting since
// the sweep before, and not woken meanwhile, is asked to park.
func (p *poller) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.active {
		w := c.wakes.Load()
		if w == c.seen && c.waiting.Load() && !c.parkWanted.Load() {
			c.parkWanted.Store(true)
			c.wake()
		}
		c.seen = w
	}
	if len(p.active) > 0 && !p.closed {
		p.timer.Reset(p.period)
	} else {
		p.armed = false
	}
}

func (p *poller) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Raw: len(p.conns), Parked: p.parked}
}

// stop ends parking and the watch for ends: parked sides are resumed, to
// wait in the runtime's poller from now on, none parks again, and every
// side reads to EAGAIN, as no event will tell it of its end.
func (p *poller) stop() {
	p.mu.Lock()
	p.closed = true
	p.timer.Stop()
	var resume []*rawConn
	for _, c := range p.conns {
		c.mustRead.Store(true)
		if c.state == parked {
			p.unpark(c)
			resume = append(resume, c)
		}
	}
	p.mu.Unlock()
	for _, c := range resume {
		go c.resume()
	}
}

// close stops the poller and waits for its goroutine.
func (p *poller) close() error {
	p.stop()
	err := p.f.Close()
	<-p.done
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return err
}
