package proxy

// The open tunnels as the admin listener shows them (internal/admin's
// /tunnels), closing one by hand, and the traffic each route has carried,
// for wssproxy_messages_total and the dashboard's charts. Nothing here runs
// per message: the tunnel's pumps publish their counts once per read
// (internal/tunnel's stats.go), and this reads them when asked.

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/tunnel"
)

// TunnelInfo is one open tunnel: who, where, since when, and what it has
// carried each way.
type TunnelInfo struct {
	ID         uint64    `json:"id"`
	ClientIP   string    `json:"client_ip"`   // as the logs and limits see it (trusted_proxies applied)
	ClientPort int       `json:"client_port"` // the TCP peer's port
	Route      string    `json:"route"`
	Backend    string    `json:"backend"`
	Host       string    `json:"host"`
	Path       string    `json:"path"`
	Protocol   string    `json:"protocol"` // the client's: "h1", or "h2" for an RFC 8441 stream
	IO         string    `json:"io"`       // the socket engine: raw, portable, or client's/backend's
	Opened     time.Time `json:"opened"`
	AgeSeconds float64   `json:"age_seconds"`
	In         DirInfo   `json:"in"`  // client to backend
	Out        DirInfo   `json:"out"` // backend to client
	Subject    string    `json:"auth_subject,omitempty"`
	// ThrottledSeconds is how long message-rate limits have held the
	// client's reads so far.
	ThrottledSeconds float64 `json:"throttled_seconds"`
}

// DirInfo is one direction of a tunnel so far.
type DirInfo struct {
	Bytes       int64      `json:"bytes"`
	Messages    int64      `json:"messages"`
	LastMessage *time.Time `json:"last_message"` // nil: none yet
}

// Idle is how long t has carried no message either way at now (its age
// when it never has).
func (t *TunnelInfo) Idle(now time.Time) time.Duration {
	last := t.Opened
	for _, d := range []DirInfo{t.In, t.Out} {
		if d.LastMessage != nil && d.LastMessage.After(last) {
			last = *d.LastMessage
		}
	}
	return now.Sub(last)
}

// Tunnels lists the open tunnels, in no particular order.
func (s *Server) Tunnels() []TunnelInfo {
	s.tmu.Lock()
	open := s.openTunnels()
	s.tmu.Unlock()
	now := time.Now()
	out := make([]TunnelInfo, len(open))
	for i, ot := range open {
		out[i] = ot.info(now)
	}
	return out
}

// Tunnel is the open tunnel id; false if none is open under that id.
func (s *Server) Tunnel(id uint64) (TunnelInfo, bool) {
	s.tmu.Lock()
	ot := s.live[id]
	s.tmu.Unlock()
	if ot == nil {
		return TunnelInfo{}, false
	}
	return ot.info(time.Now()), true
}

// CloseTunnel ends the open tunnel id from the proxy's side: a close frame
// with toClient's code to the client and toBackend's to the backend, both
// with reason, then the close grace for the answers. false if no tunnel is
// open under that id. The tunnel's access line says "closed by admin".
func (s *Server) CloseTunnel(id uint64, toClient, toBackend int, reason string) bool {
	s.tmu.Lock()
	ot := s.live[id]
	s.tmu.Unlock()
	if ot == nil {
		return false
	}
	ot.t.ShutAfter(0, tunnel.AdminClose, toClient, toBackend, reason)
	return true
}

func (ot *openTunnel) info(now time.Time) TunnelInfo {
	st := ot.t.Stats()
	ti := TunnelInfo{ID: ot.id, ClientIP: ot.clientIP, Route: ot.rt.name, Backend: ot.up.name,
		Host: ot.host, Path: ot.path, Protocol: "h1", IO: ot.t.IO(), Opened: st.Opened,
		AgeSeconds: now.Sub(st.Opened).Seconds(), In: dirInfo(st.In), Out: dirInfo(st.Out),
		Subject: ot.auth.who(), ThrottledSeconds: st.Throttled.Seconds()}
	ti.ClientPort, _ = strconv.Atoi(ot.port)
	if ot.proto == "HTTP/2.0" {
		ti.Protocol = "h2"
	}
	return ti
}

func dirInfo(d tunnel.DirStats) DirInfo {
	di := DirInfo{Bytes: d.Bytes, Messages: d.Messages}
	if !d.Last.IsZero() {
		di.LastMessage = &d.Last
	}
	return di
}

// peerPort is the port of r's TCP peer, "" if it has none (a unix socket).
func peerPort(r *http.Request) string {
	_, port, _ := net.SplitHostPort(r.RemoteAddr)
	return port
}

// Traffic is what a route's tunnels have carried: messages and bytes,
// client to backend (In) and back (Out).
type Traffic struct {
	MessagesIn, MessagesOut int64
	BytesIn, BytesOut       int64
}

func (t *Traffic) add(st tunnel.Stats) {
	t.MessagesIn += st.In.Messages
	t.MessagesOut += st.Out.Messages
	t.BytesIn += st.In.Bytes
	t.BytesOut += st.Out.Bytes
}

// addEnded adds what an ended tunnel carried to its route's totals (s.tmu
// held, in the same hold that takes it out of the table, so that a total
// read under the lock never goes back).
func (s *Server) addEnded(route string, e tunnel.End) {
	if s.endedTraffic == nil {
		s.endedTraffic = make(map[string]*Traffic)
	}
	t := s.endedTraffic[route]
	if t == nil {
		t = new(Traffic)
		s.endedTraffic[route] = t
	}
	t.add(tunnel.Stats{In: tunnel.DirStats{Messages: e.In.Messages, Bytes: e.In.Bytes},
		Out: tunnel.DirStats{Messages: e.Out.Messages, Bytes: e.Out.Bytes}})
}

// RouteTraffic is what each route's tunnels have carried since the process
// started, ended and open ones, by route name; open tunnels count as far as
// their pumps have published. Each total only grows.
func (s *Server) RouteTraffic() map[string]Traffic {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	out := make(map[string]Traffic, len(s.endedTraffic))
	for name, t := range s.endedTraffic {
		out[name] = *t
	}
	for _, ot := range s.live {
		t := out[ot.rt.name]
		t.add(ot.t.Stats())
		out[ot.rt.name] = t
	}
	return out
}

// messagesCollector is wssproxy_messages_total, read at scrape time from
// RouteTraffic: nothing is counted per message for it.
type messagesCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func newMessagesCollector(s *Server) messagesCollector {
	return messagesCollector{s, prometheus.NewDesc("wssproxy_messages_total",
		"WebSocket messages through tunnels (a fragmented message counts once; control frames do not): in is client to backend, out is backend to client.",
		[]string{"route", "direction"}, nil)}
}

func (c messagesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c messagesCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.s.RouteTraffic() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.MessagesIn), name, "in")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.MessagesOut), name, "out")
	}
}

// status is u as the status page and the dashboard show it.
func (u *upstream) status(now time.Time) BackendStatus {
	bs := BackendStatus{Name: u.name, Up: !u.down(now), Conns: u.conns.Load()}
	if cs := u.check; cs != nil {
		if ns := cs.last.Load(); ns != 0 {
			bs.LastCheck = time.Unix(0, ns)
			bs.Latency = time.Duration(cs.latency.Load())
			if e := cs.lastErr.Load(); e != nil {
				bs.CheckErr = *e
			}
		}
	}
	return bs
}
