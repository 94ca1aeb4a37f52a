//go:build unix

package proxy

import "golang.org/x/sys/unix"

// fdReserve is what the descriptor budget (fdbudget.go) leaves of the open
// file limit for everything that is not a client's or a backend's
// connection: the listeners, the admin listener's 32 connections, the log
// file, the runtime's and the socket engine's pollers, health checks and
// /readyz's dials, DNS lookups, and a connection being closed at accept.
const fdReserve = 256

// descriptorBudget is how many client and backend sockets the process may
// hold: the open file limit (which Go raises to the hard limit at start)
// less fdReserve.
func descriptorBudget() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 30 // no meaningful limit
	}
	return max(32, int(lim.Cur)-fdReserve)
}

// defaultMaxClientConnections derives max_client_connections from the
// descriptor budget: a tunnel holds two descriptors, the client's and the
// backend's.
func defaultMaxClientConnections() int { return max(16, descriptorBudget()/2) }

// defaultDescriptorsPerIP is max_descriptors_per_ip's default: a quarter
// of the budget (4,936 at a limit of 20,000; 131,008 at systemd's
// 524,288), as the admin listener gives an address a quarter of its own.
func defaultDescriptorsPerIP() int { return max(16, descriptorBudget()/4) }

// warnFileLimit warns when max_client_connections leaves the process too
// few descriptors for its tunnels' backends: handshakes then get 503 from
// the descriptor budget while clients could still connect.
func (s *Server) warnFileLimit(max int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return
	}
	if need := 2*max + fdReserve; need > int(lim.Cur) {
		s.log.Warn("max_client_connections is above what the open file limit allows: tunnels hold two descriptors each",
			"max_client_connections", max, "open_file_limit", lim.Cur, "suggested", defaultMaxClientConnections())
	}
}
