package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeRuns is one round per target with the given CPU µs per 32 B message
// at 10 and 100 connections and RSS KiB per tunnel at 100 and 300 held.
func fakeRuns(cpu10, cpu100, rss100, rss300 map[string]float64) runs {
	rs := runs{}
	for name := range cpu100 {
		rs.add(rttKey(10), name, 0, &result{CPUusPerMsg: cpu10[name], P99ms: 1})
		rs.add(rttKey(100), name, 0, &result{CPUusPerMsg: cpu100[name], P99ms: cpu100[name] / 10})
		rs.add("idle", name, 0, &result{Steps: []idleStep{{Held: 100, RSSKiBPerConn: rss100[name]}, {Held: 300, RSSKiBPerConn: rss300[name]}}})
	}
	return rs
}

// TestReport guards what the table and the targets say: wssproxy's ratio
// to each peer and to the best one (the lowest, for CPU), a target met
// only at or below its limit, growth judged by wssproxy's own figures with
// the peers' beside them, and "not measured" where a run is missing.
func TestReport(t *testing.T) {
	t.Parallel()
	c := &config{rounds: 1, idle: 300, hold: time.Second, peers: true, growth: true, conns: []int{10, 100}, steps: []int{100, 300}}
	rs := fakeRuns(
		map[string]float64{"wssproxy": 10, "nginx": 10, "haproxy": 10, "caddy": 10},
		map[string]float64{"wssproxy": 9, "nginx": 10, "haproxy": 20, "caddy": 30},
		map[string]float64{"wssproxy": 30, "nginx": 40, "haproxy": 20, "caddy": 90},
		map[string]float64{"wssproxy": 25, "nginx": 40, "haproxy": 20, "caddy": 90},
	)
	targets := []*target{{name: "direct"}}
	for _, n := range []string{"wssproxy", "nginx", "haproxy", "caddy"} {
		targets = append(targets, &target{name: n, proc: &proc{}})
	}
	var b bytes.Buffer
	printTable(&b, c, targets, rs)
	printTargets(&b, c, rs)
	out := b.String()
	for _, want := range []string{
		"| wssproxy ÷ nginx | wssproxy ÷ haproxy | wssproxy ÷ caddy | wssproxy ÷ best peer |",
		"| **proxy CPU µs per message** (32 B echo) | — | 9.0 | 10.0 | 20.0 | 30.0 | 0.90× | 0.45× | 0.30× | 0.90× (nginx) |",
		"| growth: proxy RSS KiB per idle tunnel, 100 held | — | 30.0 | 40.0 | 20.0 | 90.0 | 0.75× | 1.50× | 0.33× | 1.50× (haproxy) |",
		"100 connections ≤ 0.90× nginx: 0.900× nginx — **met**",
		"300 held, fresh process ≤ HAProxy: 1.250× haproxy — not met",
		"p99 round trip, 100 connections ≤ the best of nginx, HAProxy and Caddy: 0.900× nginx — **met**",
		"CPU ms per MB, 64 KiB messages, 4 connections ≤ 0.90× the best of nginx, HAProxy and Caddy: not measured",
		"at 100 ÷ at 10 connections, flat or falling (≤ 1.10): 0.900 — **met** (nginx 1.000, haproxy 2.000, caddy 3.000)",
		"at 300 ÷ at 100 held, flat or falling (≤ 1.10): 0.833 — **met** (nginx 1.000, haproxy 1.000, caddy 1.000)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// TestReportH2 guards the HTTP/2 column and issue 29's targets: wssproxy
// over HTTP/2 divided by wssproxy over HTTP/1.1 in the same run, met only
// at or below each limit, the idle one read at 1,000 held.
func TestReportH2(t *testing.T) {
	t.Parallel()
	c := &config{rounds: 1, idle: 3000, hold: time.Second, h2: true, conns: []int{100}, steps: []int{1000, 3000}}
	rs := runs{}
	for name, v := range map[string][3]float64{"wssproxy": {20, 2, 30}, h2Name: {25, 3, 27}} {
		rs.add(rttKey(100), name, 0, &result{CPUusPerMsg: v[0], P99ms: 1})
		rs.add("throughput", name, 0, &result{CPUmsPerMB: v[1]})
		rs.add("idle", name, 0, &result{Steps: []idleStep{{Held: 1000, RSSKiBPerConn: v[2]}, {Held: 3000, RSSKiBPerConn: 99}}})
	}
	targets := []*target{{name: "direct"}, {name: "wssproxy", proc: &proc{}}, {name: h2Name, proc: &proc{}}}
	var b bytes.Buffer
	printTable(&b, c, targets, rs)
	printTargets(&b, c, rs)
	out := b.String()
	for _, want := range []string{
		"| direct | wssproxy | wssproxy-h2 | wssproxy-h2 ÷ wssproxy |",
		"| **proxy CPU µs per message** (32 B echo) | — | 20.0 | 25.0 | 1.25× |",
		"100 streams ≤ 1.30× HTTP/1.1: 1.250× wssproxy — **met**",
		"64 KiB messages ≤ 1.20× HTTP/1.1: 1.500× wssproxy — not met",
		"1000 held (100 streams a connection), fresh process ≤ HTTP/1.1: 0.900× wssproxy — **met**",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
