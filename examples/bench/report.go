package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// runs holds every wsload result of a bench run.
type runs map[string]map[string][]sample // mode key -> target -> rounds

// sample is one wsload result and the round it came from.
type sample struct {
	round int
	r     *result
}

func (rs runs) add(key, target string, round int, r *result) {
	if rs[key] == nil {
		rs[key] = map[string][]sample{}
	}
	rs[key][target] = append(rs[key][target], sample{round, r})
}

// median is the median of f over the runs of key against target, and
// false if there are none or f is zero in all of them (not measured).
func (rs runs) median(key, target string, f func(*result) float64) (float64, bool) {
	var v []float64
	for _, x := range rs[key][target] {
		if y := f(x.r); y != 0 {
			v = append(v, y)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// row is one figure of the table.
type row struct {
	label       string
	key         string
	f           func(*result) float64
	format      string
	proxyOnly   bool
	higherBest  bool // msgs/s, MB/s, handshakes/s; else lower is better
	growthExtra bool // a growth point beside the table's main one
}

func (c *config) rows() []row {
	rtt := rttKey(tableConns)
	rows := []row{
		{label: fmt.Sprintf("msgs/s, 32 B round trips, %d connections", tableConns), key: rtt, f: func(r *result) float64 { return r.MsgsPerS }, format: "%.0f", higherBest: true},
		{label: "p99 round trip, ms", key: rtt, f: func(r *result) float64 { return r.P99ms }, format: "%.2f"},
		{label: "**proxy CPU µs per message** (32 B echo)", key: rtt, f: func(r *result) float64 { return r.CPUusPerMsg }, format: "%.1f", proxyOnly: true},
		{label: "MB/s each way, 64 KiB messages, 4 connections", key: "throughput", f: func(r *result) float64 { return r.MBpsUp }, format: "%.0f", higherBest: true},
		{label: "**proxy CPU ms per MB** (both directions)", key: "throughput", f: func(r *result) float64 { return r.CPUmsPerMB }, format: "%.2f", proxyOnly: true},
		{label: "handshakes/s, 4 at a time", key: "handshake", f: func(r *result) float64 { return r.HsPerS }, format: "%.0f", proxyOnly: true, higherBest: true},
		{label: "**proxy CPU µs per handshake** (TLS 1.3 + upgrade + echo + close)", key: "handshake", f: func(r *result) float64 { return r.CPUusPerHs }, format: "%.0f", proxyOnly: true},
		{label: "proxy RSS KiB before the idle test", key: "idle", f: func(r *result) float64 { return r.RSSBeforeKiB }, format: "%.0f", proxyOnly: true},
		{label: fmt.Sprintf("**proxy RSS KiB per idle tunnel** (%d held %v, fresh process)", c.idle, c.hold), key: "idle", f: rssPerTunnel(c.idle), format: "%.1f", proxyOnly: true},
	}
	for _, n := range c.conns {
		if n != tableConns {
			rows = append(rows, row{label: fmt.Sprintf("growth: proxy CPU µs per message, %d connections", n), key: rttKey(n),
				f: func(r *result) float64 { return r.CPUusPerMsg }, format: "%.1f", proxyOnly: true, growthExtra: true})
		}
	}
	for _, n := range c.steps {
		if n != c.idle {
			rows = append(rows, row{label: fmt.Sprintf("growth: proxy RSS KiB per idle tunnel, %d held", n), key: "idle",
				f: rssPerTunnel(n), format: "%.1f", proxyOnly: true, growthExtra: true})
		}
	}
	return rows
}

// peers are the peer proxies among targets.
func peers(targets []*target) []string {
	var out []string
	for _, t := range targets {
		if slices.Contains(peerNames, t.name) {
			out = append(out, t.name)
		}
	}
	return out
}

// best is the best of the named targets' medians for a figure, and its
// name; false if none was measured.
func (rs runs) best(names []string, key string, f func(*result) float64, higherBest bool) (float64, string, bool) {
	var bv float64
	var bn string
	for _, n := range names {
		v, ok := rs.median(key, n, f)
		if ok && (bn == "" || (higherBest && v > bv) || (!higherBest && v < bv)) {
			bv, bn = v, n
		}
	}
	return bv, bn, bn != ""
}

func printTable(w io.Writer, c *config, targets []*target, rs runs) {
	ps := peers(targets)
	fmt.Fprintf(w, "\n| figure (median of %s; idle: one run) |", rounds(c.rounds))
	for _, t := range targets {
		fmt.Fprintf(w, " %s |", t.name)
	}
	for _, p := range ps {
		fmt.Fprintf(w, " wssproxy ÷ %s |", p)
	}
	if len(ps) > 1 {
		fmt.Fprint(w, " wssproxy ÷ best peer |")
	}
	h2 := slices.ContainsFunc(targets, func(t *target) bool { return t.name == h2Name })
	if h2 {
		fmt.Fprintf(w, " %s ÷ wssproxy |", h2Name)
	}
	fmt.Fprintf(w, "\n|---|%s", strings.Repeat("---|", len(targets)+len(ps)))
	if len(ps) > 1 {
		fmt.Fprint(w, "---|")
	}
	if h2 {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, row := range c.rows() {
		fmt.Fprintf(w, "| %s |", row.label)
		for _, t := range targets {
			v, ok := rs.median(row.key, t.name, row.f)
			if !ok || (row.proxyOnly && t.proc == nil) {
				fmt.Fprint(w, " — |")
				continue
			}
			fmt.Fprintf(w, " "+row.format+" |", v)
		}
		own, ok := rs.median(row.key, "wssproxy", row.f)
		for _, p := range ps {
			if v, pok := rs.median(row.key, p, row.f); ok && pok {
				fmt.Fprintf(w, " %.2f× |", own/v)
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		if len(ps) > 1 {
			if v, name, bok := rs.best(ps, row.key, row.f, row.higherBest); ok && bok {
				fmt.Fprintf(w, " %.2f× (%s) |", own/v, name)
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		if h2 {
			if v, hok := rs.median(row.key, h2Name, row.f); ok && hok {
				fmt.Fprintf(w, " %.2f× |", v/own)
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		fmt.Fprintln(w)
	}
	if len(ps) == 0 {
		fmt.Fprintln(w, "\nAbsolute numbers vary from run to run and machine to machine.")
		return
	}
	fmt.Fprintln(w, "\nEach \"wssproxy ÷ peer\" column is wssproxy's median divided by that peer's, in this run;"+
		" \"best peer\" is the peer with the lowest median (the highest for msgs/s, MB/s and handshakes/s)."+
		" Below 1× is better for CPU, p99 and RSS; above 1× is better for msgs/s, MB/s and handshakes/s."+
		" Absolute numbers vary from run to run and machine to machine: read the ratios.")
}

// goal is one of the issues' targets: the median of own (wssproxy if
// empty) at most limit times the best (lowest) of the named peers'.
type goal struct {
	label string
	key   string
	f     func(*result) float64
	peers []string
	limit float64
	own   string
}

func (g goal) print(w io.Writer, rs runs) {
	own, ok := rs.median(g.key, cmp.Or(g.own, "wssproxy"), g.f)
	ref, name, rok := rs.best(g.peers, g.key, g.f, false)
	if !ok || !rok {
		fmt.Fprintf(w, "- %s: not measured\n", g.label)
		return
	}
	fmt.Fprintf(w, "- %s: %.3f× %s — %s\n", g.label, own/ref, name, met(own/ref <= g.limit))
}

func printTargets(w io.Writer, c *config, rs runs) {
	rtt := rttKey(tableConns)
	if c.h2 {
		// Issue 29: WebSockets over HTTP/2 no dearer than over HTTP/1.1,
		// idle tunnels at 1,000 held when the run holds that many.
		held := c.idle
		if slices.Contains(c.steps, 1000) {
			held = 1000
		}
		fmt.Fprintf(w, "\nTargets (issue 29; %s's median ÷ wssproxy's over HTTP/1.1, %s):\n\n", h2Name, rounds(c.rounds))
		for _, g := range []goal{
			{fmt.Sprintf("HTTP/2: proxy CPU µs per 32 B message, %d streams ≤ 1.30× HTTP/1.1", tableConns), rtt, func(r *result) float64 { return r.CPUusPerMsg }, []string{"wssproxy"}, 1.3, h2Name},
			{"HTTP/2: proxy CPU ms per MB, 64 KiB messages ≤ 1.20× HTTP/1.1", "throughput", func(r *result) float64 { return r.CPUmsPerMB }, []string{"wssproxy"}, 1.2, h2Name},
			{fmt.Sprintf("HTTP/2: proxy RSS KiB per idle tunnel, %d held (100 streams a connection), fresh process ≤ HTTP/1.1", held), "idle", rssPerTunnel(held), []string{"wssproxy"}, 1, h2Name},
		} {
			g.print(w, rs)
		}
	}
	all := "the best of nginx, HAProxy and Caddy"
	goals := []goal{
		{fmt.Sprintf("proxy CPU µs per 32 B message, %d connections ≤ 0.90× nginx", tableConns), rtt, func(r *result) float64 { return r.CPUusPerMsg }, []string{"nginx"}, 0.90, ""},
		{"proxy CPU ms per MB, 64 KiB messages, 4 connections ≤ 0.90× " + all, "throughput", func(r *result) float64 { return r.CPUmsPerMB }, peerNames, 0.90, ""},
		{"proxy CPU µs per full TLS handshake + upgrade (X25519 offered) ≤ 0.90× nginx", "handshake", func(r *result) float64 { return r.CPUusPerHs }, []string{"nginx"}, 0.90, ""},
		{fmt.Sprintf("proxy RSS KiB per idle tunnel, %d held, fresh process ≤ HAProxy", c.idle), "idle", rssPerTunnel(c.idle), []string{"haproxy"}, 1, ""},
		{fmt.Sprintf("p99 round trip, %d connections ≤ %s", tableConns, all), rtt, func(r *result) float64 { return r.P99ms }, peerNames, 1, ""},
	}
	if !c.peers {
		fmt.Fprintln(w, "\nTargets (issue 16): not measured without the peers (-peers=false).")
		return
	}
	fmt.Fprintf(w, "\nTargets (issue 16; wssproxy's median ÷ the peer's, %s):\n\n", rounds(c.rounds))
	for _, g := range goals {
		g.print(w, rs)
	}
	if !c.growth {
		return
	}
	// Growth is flat or falling when the figure at the largest count is
	// within growthSlack of the one at the smallest: the runs spread by
	// about that much. The peers' own growth is given beside wssproxy's.
	const growthSlack = 1.10
	cpu := func(r *result) float64 { return r.CPUusPerMsg }
	if lo, hi := c.conns[0], c.conns[len(c.conns)-1]; lo < hi {
		printGrowth(w, rs, fmt.Sprintf("proxy CPU per message at %d ÷ at %d connections", hi, lo), growthSlack,
			point{rttKey(lo), cpu}, point{rttKey(hi), cpu})
	}
	if first, last := c.steps[0], c.steps[len(c.steps)-1]; first < last {
		printGrowth(w, rs, fmt.Sprintf("proxy RSS per idle tunnel at %d ÷ at %d held", last, first), growthSlack,
			point{"idle", rssPerTunnel(first)}, point{"idle", rssPerTunnel(last)})
	}
}

// point is one figure of a growth run: the runs' key and what to read.
type point struct {
	key string
	f   func(*result) float64
}

// printGrowth prints wssproxy's ratio of the figure at hi to the one at lo,
// met if at most slack, with the peers' ratios beside it.
func printGrowth(w io.Writer, rs runs, what string, slack float64, lo, hi point) {
	ratio := func(target string) (float64, bool) {
		a, aok := rs.median(lo.key, target, lo.f)
		b, bok := rs.median(hi.key, target, hi.f)
		return b / a, aok && bok
	}
	own, ok := ratio("wssproxy")
	if !ok {
		return
	}
	fmt.Fprintf(w, "- growth, %s, flat or falling (≤ %.2f): %.3f — %s", what, slack, own, met(own <= slack))
	var others []string
	for _, p := range peerNames {
		if v, ok := ratio(p); ok {
			others = append(others, fmt.Sprintf("%s %.3f", p, v))
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(others, ", "))
	}
	fmt.Fprintln(w)
}

func met(ok bool) string {
	if ok {
		return "**met**"
	}
	return "not met"
}

func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}
