package proxy

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Connections whose TCP handshake completed before a shutdown wait in the
// listening socket's queue, and closing the socket resets them: a load
// balancer that connected in the moment before its next health check
// (HAProxy in TCP mode, a Kubernetes Service) sees the connection fail
// after it was made, and cannot send it elsewhere. So a Shutdown does not
// just close the listeners: it wakes each one's Accept (a deadline in the
// past), which then takes what is queued, without waiting, until the
// queue is empty (acceptQueued), and only then says closed. Those
// connections are served like any accepted before the drain. A Handover
// closes at once: the new process holds the same sockets, queue included.

// drainListener is a listening socket that can hand over its queue.
type drainListener struct {
	net.Listener
	sock     deadlineListener
	draining atomic.Bool
}

// deadlineListener is what a drainListener needs of the socket: a
// *net.TCPListener, or a wrapper that passes these on.
type deadlineListener interface {
	SetDeadline(t time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// newDrainListener wraps ln, or returns nil where its queue cannot be
// taken (a listener without a socket, or a platform without accept4).
func newDrainListener(ln net.Listener) *drainListener {
	dl, ok := ln.(deadlineListener)
	if !ok || !canAcceptQueued {
		return nil
	}
	return &drainListener{Listener: ln, sock: dl}
}

func (l *drainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil || !l.draining.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return c, err
	}
	if c, ok := acceptQueued(l.sock); ok {
		return c, nil
	}
	return nil, net.ErrClosed // Serve returns, and closes the listener
}

// stopAccepting makes Accept return what is queued, then net.ErrClosed;
// false if the socket refused the deadline (then close it).
func (l *drainListener) stopAccepting() bool {
	l.draining.Store(true)
	return l.sock.SetDeadline(time.Unix(1, 0)) == nil
}
