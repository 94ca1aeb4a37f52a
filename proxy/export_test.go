package proxy

import (
	"fmt"
	"time"

	"github.com/wssproxy/wssproxy/internal/sockio"
)

// SetCloseGrace makes s's tunnels wait d for a peer's close reply, so
// that a test can tell a reply seen from a wait run out. Call it before s
// serves.
func SetCloseGrace(s *Server, d time.Duration) { s.closeGrace = d }

// SetParkAfter makes s's raw tunnel sides park after between d and 2d of
// quiet. Call it before s serves.
func SetParkAfter(s *Server, d time.Duration) {
	s.engine.Close()
	s.engine = newEngine(s.log, d)
}

// EngineStats is what s's socket engine holds: raw sides, and how many
// of them are parked.
func EngineStats(s *Server) sockio.Stats { return s.engine.Stats() }

// Leftovers reports what a stopped Server still holds that it should
// not: open tunnels, sides of its socket engine (parked ones included),
// accepted client connections not closed.
func Leftovers(s *Server) error {
	s.tmu.Lock()
	live := len(s.live)
	s.tmu.Unlock()
	st := s.engine.Stats()
	conns, fds := s.clients.open.Load(), s.fds.open.Load()
	if live == 0 && st == (sockio.Stats{}) && conns == 0 && fds == 0 && s.open.Load() == 0 {
		return nil
	}
	return fmt.Errorf("a stopped server holds %d tunnels (%d counted), %d raw sides (%d parked), %d client connections, %d descriptors",
		live, s.open.Load(), st.Raw, st.Parked, conns, fds)
}
