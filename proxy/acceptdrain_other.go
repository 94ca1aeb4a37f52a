//go:build !(linux || freebsd)

package proxy

import "net"

// Elsewhere a shutdown closes the listeners at once.
const canAcceptQueued = false

func acceptQueued(deadlineListener) (net.Conn, bool) { return nil, false }
