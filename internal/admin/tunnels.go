package admin

// The tunnel API: GET /tunnels (filtered, sorted, paged), GET
// /tunnels/{id}, and POST /tunnels/{id}/close. The open tunnels come from
// proxy.Server.Tunnels, which reads what each tunnel's pumps publish; this
// file only chooses and orders them.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wssproxy/wssproxy/proxy"
)

// Close codes a tunnel closed through the API gets by default (RFC 6455
// §7.4.1): 1008 policy violation to the client, 1001 going away to the
// backend.
const (
	DefaultClientCloseCode  = 1008
	DefaultBackendCloseCode = 1001
)

// TunnelPage is GET /tunnels' answer: Total tunnels matched the filters,
// of which Tunnels are those from Offset on, at most Limit.
type TunnelPage struct {
	Total   int                `json:"total"`
	Offset  int                `json:"offset"`
	Limit   int                `json:"limit"`
	Sort    string             `json:"sort"`
	Tunnels []proxy.TunnelInfo `json:"tunnels"`
}

// defaultLimit and maxLimit bound a page of GET /tunnels.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// tunnelQuery is what GET /tunnels was asked for.
type tunnelQuery struct {
	route    string
	ip       netip.Prefix // zero: any
	idleOver time.Duration
	sort     string // a key of sortKeys, "-" before it for descending
	offset   int
	limit    int
}

// sortKeys are the orders GET /tunnels knows, ?sort=KEY (ascending) or
// ?sort=-KEY (descending).
var sortKeys = map[string]func(now time.Time, a, b *proxy.TunnelInfo) int{
	"id":           func(_ time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.ID, b.ID) },
	"age":          func(_ time.Time, a, b *proxy.TunnelInfo) int { return b.Opened.Compare(a.Opened) },
	"idle":         func(now time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.Idle(now), b.Idle(now)) },
	"route":        func(_ time.Time, a, b *proxy.TunnelInfo) int { return strings.Compare(a.Route, b.Route) },
	"client":       func(_ time.Time, a, b *proxy.TunnelInfo) int { return strings.Compare(a.ClientIP, b.ClientIP) },
	"bytes_in":     func(_ time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.In.Bytes, b.In.Bytes) },
	"bytes_out":    func(_ time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.Out.Bytes, b.Out.Bytes) },
	"messages_in":  func(_ time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.In.Messages, b.In.Messages) },
	"messages_out": func(_ time.Time, a, b *proxy.TunnelInfo) int { return cmp.Compare(a.Out.Messages, b.Out.Messages) },
	"throttled": func(_ time.Time, a, b *proxy.TunnelInfo) int {
		return cmp.Compare(a.ThrottledSeconds, b.ThrottledSeconds)
	},
}

// parseTunnelQuery reads ?route= ?ip= (an address or a prefix) ?idle_over=
// (a Go duration) ?sort= ?offset= ?limit=.
func parseTunnelQuery(r *http.Request) (tunnelQuery, error) {
	v := r.URL.Query()
	q := tunnelQuery{route: v.Get("route"), sort: cmp.Or(v.Get("sort"), "id"), limit: defaultLimit}
	if s := v.Get("ip"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return q, fmt.Errorf("ip: %q is neither an address nor a prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		q.ip = p.Masked()
	}
	if s := v.Get("idle_over"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return q, fmt.Errorf("idle_over: %q is not a duration such as 10m", s)
		}
		q.idleOver = d
	}
	if _, ok := sortKeys[strings.TrimPrefix(q.sort, "-")]; !ok {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range sortKeys {
				if !yield(k) {
					return
				}
			}
		})
		return q, fmt.Errorf("sort: %q is not one of %s (a leading - for descending)", q.sort, strings.Join(keys, ", "))
	}
	for _, f := range []struct {
		name string
		to   *int
		max  int
	}{{"offset", &q.offset, 1 << 30}, {"limit", &q.limit, maxLimit}} {
		if s := v.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > f.max {
				return q, fmt.Errorf("%s: %q is not a number from 0 to %d", f.name, s, f.max)
			}
			*f.to = n
		}
	}
	return q, nil
}

// selectTunnels applies q to all: filters, order, page.
func selectTunnels(all []proxy.TunnelInfo, q tunnelQuery, now time.Time) TunnelPage {
	kept := all[:0]
	for _, t := range all {
		if q.route != "" && t.Route != q.route {
			continue
		}
		if q.ip.IsValid() {
			a, err := netip.ParseAddr(t.ClientIP)
			if err != nil || !q.ip.Contains(a.Unmap()) {
				continue
			}
		}
		if q.idleOver > 0 && t.Idle(now) <= q.idleOver {
			continue
		}
		kept = append(kept, t)
	}
	key, desc := strings.CutPrefix(q.sort, "-")
	by := sortKeys[key]
	slices.SortStableFunc(kept, func(a, b proxy.TunnelInfo) int {
		c := by(now, &a, &b)
		if desc {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.ID, b.ID))
	})
	page := TunnelPage{Total: len(kept), Offset: q.offset, Limit: q.limit, Sort: q.sort, Tunnels: []proxy.TunnelInfo{}}
	if q.offset < len(kept) {
		page.Tunnels = kept[q.offset:min(len(kept), q.offset+q.limit)]
	}
	return page
}

func (o Options) listTunnels(w http.ResponseWriter, r *http.Request) {
	q, err := parseTunnelQuery(r)
	if err != nil {
		http.Error(w, "admin: "+err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, selectTunnels(o.Server.Tunnels(), q, time.Now()))
}

func (o Options) getTunnel(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "admin: a tunnel id is a number", http.StatusBadRequest)
		return
	}
	t, ok := o.Server.Tunnel(id)
	if !ok {
		http.Error(w, "admin: no open tunnel "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	writeJSON(w, t)
}

// crossOrigin refuses state-changing requests a browser sends from another
// site (Sec-Fetch-Site, else Origin against Host): a web page must not close
// tunnels through the browser of someone on this machine. Requests with
// neither header (curl, scripts) and the admin page's own pass.
var crossOrigin = http.NewCrossOriginProtection()

// closeTunnel is POST /tunnels/{id}/close, with optional form or query
// values code (to the client, default 1008), backend_code (default 1001)
// and reason (UTF-8, at most 123 bytes, as a close frame holds).
func (o Options) closeTunnel(w http.ResponseWriter, r *http.Request) {
	log := cmp.Or(o.Log, slog.Default())
	if err := crossOrigin.Check(r); err != nil {
		log.Warn("admin: cross-origin tunnel close refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		http.Error(w, "admin: cross-origin request refused", http.StatusForbidden)
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "admin: a tunnel id is a number", http.StatusBadRequest)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	toClient, err1 := closeCode(r.FormValue("code"), DefaultClientCloseCode)
	toBackend, err2 := closeCode(r.FormValue("backend_code"), DefaultBackendCloseCode)
	reason := cmp.Or(r.FormValue("reason"), "closed by the operator")
	switch {
	case err1 != nil:
		http.Error(w, "admin: code: "+err1.Error(), http.StatusBadRequest)
		return
	case err2 != nil:
		http.Error(w, "admin: backend_code: "+err2.Error(), http.StatusBadRequest)
		return
	case len(reason) > 123:
		http.Error(w, "admin: reason: longer than the 123 bytes a close frame holds", http.StatusBadRequest)
		return
	case !utf8.ValidString(reason): // RFC 6455 §5.5.1: a peer would fail the connection (1007)
		http.Error(w, "admin: reason: not UTF-8", http.StatusBadRequest)
		return
	}
	t, ok := o.Server.Tunnel(id)
	if !ok || !o.Server.CloseTunnel(id, toClient, toBackend, reason) {
		http.Error(w, "admin: no open tunnel "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	attrs := []any{"id", id, "route", t.Route, "client_ip", t.ClientIP,
		"code", toClient, "backend_code", toBackend, "reason", reason, "asked_by", r.RemoteAddr}
	if user, _, ok := r.BasicAuth(); ok && o.BasicAuth != nil && o.BasicAuth() != nil {
		attrs = append(attrs, "user", user) // admin basic_auth's, checked by guard
	}
	log.Info("admin: tunnel close asked", append(attrs, "user_agent", r.UserAgent())...)
	if r.FormValue("return") == "page" { // the page's form, without JavaScript
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, map[string]any{"id": id, "code": toClient, "backend_code": toBackend, "reason": reason})
}

// closeCode is s as a close code an endpoint may send (RFC 6455 §7.4),
// def when s is empty.
func closeCode(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	c, err := strconv.Atoi(s)
	if err != nil || !sendable(c) {
		return 0, fmt.Errorf("%q is not a close code that may be sent (1000-1003, 1007-1014, 3000-4999)", s)
	}
	return c, nil
}

func sendable(c int) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}

func writeJSON(w http.ResponseWriter, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff") // never sniffed into a page
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
