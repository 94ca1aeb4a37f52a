package admin

// The dashboard's charts: an in-process ring buffer of samples, one every
// SampleEvery over the last hour, each a rate over the interval before it.
// A time series is periodic by nature, so a ticker takes the samples; each
// costs one walk of the open tunnels (proxy.Server.RouteTraffic) and one
// gathering of the metrics registry, whatever the traffic.

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/proxy"
)

// SampleEvery is how often History samples; HistorySpan is how far back it
// keeps them.
const (
	SampleEvery = 2 * time.Second
	HistorySpan = time.Hour
)

// Point is one sample: rates are per second over the interval that ended
// at T (Unix milliseconds).
type Point struct {
	T          int64   `json:"t"`
	Open       int64   `json:"open"`       // tunnels open at T
	Handshakes float64 `json:"handshakes"` // WebSocket handshakes completed, per second
	Refusals   float64 `json:"refusals"`   // requests the proxy refused, per second
	// Routes are each route's messages and bytes per second:
	// [messages in, messages out, bytes in, bytes out] (in: client to backend).
	Routes map[string][4]float64 `json:"routes"`
}

// History keeps the last hour of Points. The zero History is not usable:
// make one with NewHistory.
type History struct {
	srv    *proxy.Server
	gather prometheus.Gatherer // nil: no handshake or refusal rates

	mu     sync.Mutex
	points []Point // a ring of cap(points)
	next   int     // where the next point goes once the ring is full
	prev   totals
	cancel context.CancelFunc
	done   chan struct{}
}

type totals struct {
	at         time.Time
	handshakes float64
	refusals   float64
	routes     map[string]proxy.Traffic
}

// NewHistory samples srv (and the handshake and refusal counters of g,
// which may be nil) every every until Stop (0: only when Sample is
// called); wssproxy's is every SampleEvery.
func NewHistory(srv *proxy.Server, g prometheus.Gatherer, every time.Duration) *History {
	h := &History{srv: srv, gather: g, points: make([]Point, 0, int(HistorySpan/SampleEvery)), done: make(chan struct{})}
	h.prev = h.totals(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if every <= 0 {
		close(h.done)
		return h
	}
	go h.run(ctx, every)
	return h
}

// Stop ends the sampling and waits for it. A nil History, or one stopped
// already, has nothing to stop.
func (h *History) Stop() {
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
}

func (h *History) run(ctx context.Context, every time.Duration) {
	defer close(h.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Sample(now)
		}
	}
}

// Sample adds the point for the interval ending at now (the ticker calls
// it every SampleEvery).
func (h *History) Sample(now time.Time) {
	cur := h.totals(now)
	h.mu.Lock()
	defer h.mu.Unlock()
	secs := cur.at.Sub(h.prev.at).Seconds()
	if secs <= 0 {
		return
	}
	p := Point{T: now.UnixMilli(), Open: h.srv.OpenTunnels(), Routes: make(map[string][4]float64, len(cur.routes)),
		Handshakes: max(0, cur.handshakes-h.prev.handshakes) / secs, Refusals: max(0, cur.refusals-h.prev.refusals) / secs}
	for name, t := range cur.routes {
		was := h.prev.routes[name]
		p.Routes[name] = [4]float64{
			float64(max(0, t.MessagesIn-was.MessagesIn)) / secs, float64(max(0, t.MessagesOut-was.MessagesOut)) / secs,
			float64(max(0, t.BytesIn-was.BytesIn)) / secs, float64(max(0, t.BytesOut-was.BytesOut)) / secs,
		}
	}
	h.prev = cur
	if len(h.points) < cap(h.points) {
		h.points = append(h.points, p)
		return
	}
	h.points[h.next] = p
	h.next = (h.next + 1) % len(h.points)
}

func (h *History) totals(now time.Time) totals {
	t := totals{at: now, routes: h.srv.RouteTraffic()}
	if h.gather == nil {
		return t
	}
	mfs, err := h.gather.Gather()
	if err != nil {
		return t
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "wssproxy_handshake_duration_seconds":
			for _, m := range mf.GetMetric() {
				t.handshakes += float64(m.GetHistogram().GetSampleCount())
			}
		case "wssproxy_requests_refused_total":
			for _, m := range mf.GetMetric() {
				t.refusals += m.GetCounter().GetValue()
			}
		}
	}
	return t
}

// Since is the points after Unix millisecond since, oldest first.
func (h *History) Since(since int64) []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Point, 0, len(h.points))
	for i := range h.points {
		p := h.points[(h.next+i)%len(h.points)]
		if p.T > since {
			out = append(out, p)
		}
	}
	return out
}
