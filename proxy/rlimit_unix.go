//go:build unix

package proxy

import "golang.org/x/sys/unix"

// fdReserve is what the default max_client_connections leaves of the open
// file limit for everything that is not a client connection: listeners,
// the admin reserve, log file, backends' idle connections and health
// checks, the runtime's poller.
const fdReserve = 256

// defaultMaxClientConnections derives max_client_connections from the
// open file limit (which Go raises to the hard limit at start): a tunnel
// holds two descriptors, the client's and the backend's.
func defaultMaxClientConnections() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20 // no meaningful limit
	}
	return max(16, (int(lim.Cur)-fdReserve)/2)
}

// warnFileLimit warns when max_client_connections leaves the process too
// few descriptors: then accept fails with EMFILE before the bound refuses.
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
