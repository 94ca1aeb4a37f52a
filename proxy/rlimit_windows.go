package proxy

// Windows has no open file limit for sockets (a process may hold millions
// of handles), so there is nothing to derive max_client_connections from
// and nothing to warn about, and the descriptor budget (fdbudget.go) is
// unbounded. What runs out first is the dynamic port range that backend
// connections are dialled from: 16,384 ports by default (49152–65535,
// `netsh int ipv4 show dynamicport tcp`), one per tunnel to a backend. The
// default stays within it, so that a full process refuses new clients at
// accept instead of failing their backend dials with 502. Set
// max_client_connections to go further.
const windowsMaxClientConnections = 16384

func defaultMaxClientConnections() int { return windowsMaxClientConnections }

// descriptorBudget: no open file limit to keep under.
func descriptorBudget() int { return 1 << 30 }

// defaultDescriptorsPerIP: a quarter of the dynamic port range, which a
// tunnel's backend connection takes one of.
func defaultDescriptorsPerIP() int { return windowsMaxClientConnections / 4 }

func (s *Server) warnFileLimit(int) {}
