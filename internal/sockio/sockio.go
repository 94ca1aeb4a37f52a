// Package sockio is the tunnel's socket engine: how the bytes of one side
// of a WebSocket tunnel are read and written. The tunnel (internal/tunnel)
// sees a side only as a Conn; which implementation serves it is decided
// once, when the side is made (Engine.Conn), and reported by Conn.IO.
//
//   - portable (portable.go) is the default off Linux and for
//     every connection that is not a plain socket the engine can take over
//     (an HTTP/2 stream, a PROXY protocol reader, TLS towards a backend,
//     net.Pipe in tests): net.Conn.Read into a 256-byte buffer while the
//     peer is quiet and a pooled 64 KiB buffer while data moves; a
//     goroutine per side blocked in the runtime's poller.
//   - raw (raw_linux.go, Linux only) serves TCP and unix sockets, plain or
//     under the proxy's own crypto/tls server connections: read(2) and
//     write(2) inside syscall.RawConn, no read that finds the socket empty
//     after a short one, and idle sides that give up their goroutine
//     (parking). It rests on kernel and runtime behaviour that the
//     contract tests in this package pin down, one test per assumption
//     (contract_linux_test.go), so that a Go or kernel upgrade that breaks
//     one fails that test by name. WSSPROXY_RAWIO=0 turns it off.
//
// An Engine is an instance: the Server that serves tunnels creates one and
// closes it; nothing here starts in init.
package sockio

import (
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Conn is one side of a tunnel as the engine serves it.
type Conn interface {
	// Pump reads the connection until its end, passing every chunk read to
	// feed (valid only until feed returns), then calls end once: with
	// feed's error if feed failed, else with the read's (io.EOF at the
	// end of the stream, net.ErrClosed after Close). Pump may return
	// before end is called: an idle raw side gives up its goroutine and a
	// fresh one takes the pump up when the socket has something or the
	// side is closed. feed and end are never called concurrently, and
	// never after end. Pump is called once.
	Pump(feed func([]byte) error, end func(ferr, rerr error))
	// Write writes all of p or fails (its deadline, a closed connection,
	// a peer that reset it). It may be called while Pump runs, from one
	// goroutine at a time.
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
	// CloseWrite half-closes: TLS close_notify, then the FIN. It returns
	// errors.ErrUnsupported for a connection that cannot half-close.
	CloseWrite() error
	// Close closes the connection from any goroutine, feed and end
	// included. A Pump that is reading ends with net.ErrClosed.
	Close() error
	// IO names the implementation: "raw" or "portable".
	IO() string
}

// Implementation names (Conn.IO).
const (
	IORaw      = "raw"
	IOPortable = "portable"
)

// Underlay is a connection between a crypto/tls server connection and its
// socket that lets the raw engine read and write the socket itself: once
// SetHook has been called, its Read and Write must call the hook's. The
// proxy's accepted connections implement it; any other connection under
// TLS is served by the portable engine.
type Underlay interface {
	syscall.Conn
	SetHook(h Hook)
}

// Hook is what an Underlay passes its reads and writes to.
type Hook interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
}

// DefaultParkAfter is how long a raw side waits for its socket before it
// may park: it parks after between one and two of these.
const DefaultParkAfter = time.Second

// Options configure an Engine.
type Options struct {
	// Portable serves every connection with the portable engine. See
	// RawFromEnv.
	Portable bool
	// ParkAfter is how long a raw side waits before it may give up its
	// goroutine (between one and two periods); 0 means DefaultParkAfter.
	ParkAfter time.Duration
}

// Engine makes the Conns of tunnel sides. The zero Engine is not usable;
// New makes one.
type Engine struct {
	raw    *poller // nil: portable only
	reason string  // why there is no raw engine, for the startup log
}

// New makes an Engine. Where the raw engine cannot run (not Linux, or the
// kernel refused its epoll instance) every Conn is portable; Mode says
// which is in use and why.
func New(o Options) *Engine {
	if o.ParkAfter <= 0 {
		o.ParkAfter = DefaultParkAfter
	}
	e := &Engine{}
	if o.Portable {
		e.reason = "turned off (WSSPROXY_RAWIO=0)"
		return e
	}
	e.raw, e.reason = newPoller(o.ParkAfter)
	return e
}

// Conn is c as a tunnel side: raw where the raw engine can serve it,
// otherwise portable. c must not be read or written by anyone else from
// now on.
func (e *Engine) Conn(c net.Conn) Conn {
	if e.raw != nil {
		if rc := e.raw.conn(c); rc != nil {
			return rc
		}
	}
	return newPortable(c)
}

// Mode is the engine in use for sockets ("raw" or "portable") and, for
// portable, why.
func (e *Engine) Mode() (io, why string) {
	if e.raw != nil {
		return IORaw, ""
	}
	return IOPortable, e.reason
}

// Stats is what an Engine holds now.
type Stats struct {
	Raw    int // raw sides not yet closed
	Parked int // of those, sides whose pump has given up its goroutine
}

// Stats reports the raw sides the engine holds.
func (e *Engine) Stats() Stats {
	if e.raw == nil {
		return Stats{}
	}
	return e.raw.stats()
}

// Close releases the engine's poller. Sides still open are closed first
// by their owners; a raw side made after Close is portable.
func (e *Engine) Close() error {
	if e.raw == nil {
		return nil
	}
	return e.raw.close()
}

// RawFromEnv reports whether the environment allows the raw engine:
// WSSPROXY_RAWIO=0 (or false, off, no) turns it off, the day a Go or
// kernel upgrade misbehaves; unset or anything else leaves it on. ok is
// false for a value it does not know, which the caller should warn about.
func RawFromEnv() (raw, ok bool) {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("WSSPROXY_RAWIO"))); v {
	case "0", "false", "off", "no":
		return false, true
	case "", "1", "true", "on", "yes":
		return true, true
	}
	return true, false
}
