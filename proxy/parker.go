package proxy

import "sync/atomic"

// Parking: a tunnel side whose pump has waited a whole checkAfter for its
// socket gives up its goroutine. An idle tunnel is otherwise two
// goroutines parked in the runtime's poller, each with a stack of 4 KiB
// (the pump's deepest calls, crypto/tls's writes among them, grow it there,
// and a parked pump uses too much of it for the runtime to shrink it):
// 8 KiB per idle tunnel, a third of what it holds. A parked side's socket
// is watched by the parker instead (parker_linux.go: one goroutine, an
// epoll instance of its own, a one-shot registration per parked socket);
// when the socket has something (data, end of stream, an error) or the
// proxy closes the side, a fresh goroutine takes up the pump where it
// stopped (tunnel.pumpLoop). A pump's state lives in its side and reader,
// not on its stack, so nothing is lost.
//
// Where parking is not possible (not Linux, no epoll instance, or a side
// that is not read directly, such as an HTTP/2 stream), pumps wait in the
// poller as before.

// Park states of a side.
const (
	running int32 = iota
	parked
)

// park hands s's socket to the parker: true means s's pump must end its
// goroutine now (the parker, or closeConn, starts a new one); false, that
// it goes on waiting where it is.
func park(s *side) bool {
	if !parkingWorks() {
		return false
	}
	s.park.Store(parked)
	if s.rd.closeWanted.Load() || !watch(s) {
		if s.park.CompareAndSwap(parked, running) {
			return false
		}
		// closeConn took it over meanwhile, and resumes it.
	}
	return true
}

// unpark takes s back from the parker, if it is parked: true means the
// caller now owns s's pump and must resume it (s.t.resume).
func unpark(s *side) bool {
	if !s.park.CompareAndSwap(parked, running) {
		return false
	}
	unwatch(s)
	return true
}

// parkState is a side's: running or parked.
type parkState = atomic.Int32
