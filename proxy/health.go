package proxy

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Active health checks (health_interval): every interval each backend of
// the route gets a WebSocket handshake on the route's backend path, or an
// HTTP GET of health_path expecting 2xx. unhealthy_threshold failures in a
// row take it out of rotation, healthy_threshold passes bring it back.
// Open tunnels are never touched either way. The checkers belong to a
// configuration; what they found belongs to the backend (registry.go), so
// the next configuration's checkers go on from it.

// startHealth runs the checks of st's routes until st.ctx ends (a reload
// replaced st, or the server stopped).
func (s *Server) startHealth(st *state) {
	for i, rt := range st.router.routes {
		r := st.cfg.Routes[i]
		if rt.pool == nil || r.HealthInterval == 0 {
			continue
		}
		s.bg.Go(func() { s.checkLoop(st, rt, &r) })
	}
}

func (s *Server) checkLoop(st *state, rt *route, r *Route) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			for _, u := range rt.pool.ups {
				if u.transport == addr {
					return st.dialer.DialContext(ctx, u.network, u.addr)
				}
			}
			return nil, net.UnknownNetworkError(addr)
		},
		DisableKeepAlives: true,
	}
	if u := rt.pool.ups[0]; u.tls != nil {
		tr.TLSClientConfig = u.tls.Clone()
		tr.TLSClientConfig.NextProtos = nil
	}
	client := &http.Client{Transport: tr, Timeout: r.HealthTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer tr.CloseIdleConnections()
	path := r.HealthPath
	if path == "" {
		path = rt.targetPath(rt.prefix)
	}
	t := time.NewTicker(r.HealthInterval)
	defer t.Stop()
	for {
		for _, u := range rt.pool.ups {
			s.checkOne(st.ctx, client, rt, r, u, path)
		}
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) checkOne(ctx context.Context, client *http.Client, rt *route, r *Route, u *upstream, path string) {
	ctx, cancel := context.WithTimeout(ctx, r.HealthTimeout)
	defer cancel()
	scheme := "http"
	if u.tls != nil {
		scheme = "https"
	}
	var err error
	began := time.Now()
	if r.HealthPath != "" {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.transport+path, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					err = &statusError{resp.StatusCode}
				}
			}
		}
	} else {
		var c *websocket.Conn
		ws := "ws"
		if u.tls != nil {
			ws = "wss"
		}
		c, _, err = websocket.Dial(ctx, ws+"://"+u.transport+path, &websocket.DialOptions{HTTPClient: client})
		if err == nil {
			c.CloseNow()
		}
	}
	if ctx.Err() != nil && err != nil && context.Cause(ctx) == context.Canceled {
		return // stopping
	}
	if err != nil && isOutOfFDs(err) {
		s.fdLogs[kindOwnFDs].note("") // the proxy's fault: no result for the backend
		return
	}
	cs := u.check
	cs.noteCheck(began, err)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err != nil {
		cs.okRun, cs.failRun = 0, cs.failRun+1
		if cs.failRun >= r.UnhealthyThreshold && !cs.down.Load() {
			cs.down.Store(true)
			s.log.Warn("backend unhealthy: out of rotation", "route", rt.name, "backend", u.name, "failed_checks", cs.failRun, "error", err)
		}
		return
	}
	cs.failRun, cs.okRun = 0, cs.okRun+1
	if cs.okRun >= r.HealthyThreshold && cs.down.Load() {
		cs.down.Store(false)
		s.log.Info("backend healthy: back in rotation", "route", rt.name, "backend", u.name, "passed_checks", cs.okRun)
	}
}

// noteCheck records a check that began at began and ended now with err,
// for the dashboard (BackendStatus).
func (cs *checkState) noteCheck(began time.Time, err error) {
	now := time.Now()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	cs.lastErr.Store(&msg)
	cs.latency.Store(int64(now.Sub(began)))
	cs.last.Store(now.UnixNano())
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "health check answered " + http.StatusText(e.code) }
