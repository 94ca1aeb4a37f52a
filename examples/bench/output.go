package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// writeOutputs writes to c.out the table (table.md), every wsload result
// (results.json as wsload printed it, results.tsv flattened) and, with
// growth runs, their medians (growth-cpu.dat, growth-rss.dat), a gnuplot
// script (growth.gp) and the plot it draws (growth.png). It returns the
// files written.
//
// The plot is gnuplot's (Debian's gnuplot-nox, which compare.sh installs):
// axes, tick labels and a legend need text, and drawing text in Go would
// mean a font and a rasteriser as new dependencies of the module, or a
// hand-made bitmap font, for one picture. The data files and the script
// stay beside the PNG, so the plot can be redrawn or restyled with
// `gnuplot growth.gp` in that directory.
func writeOutputs(ctx context.Context, c *config, targets []*target, rs runs, table []byte, versions []string) ([]string, error) {
	var files []string
	write := func(name string, b []byte) error {
		path := filepath.Join(c.out, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		files = append(files, path)
		return nil
	}
	if err := write("table.md", table); err != nil {
		return files, err
	}
	raw, err := rawJSON(c, rs, versions)
	if err != nil {
		return files, err
	}
	if err := write("results.json", raw); err != nil {
		return files, err
	}
	if err := write("results.tsv", rawTSV(rs)); err != nil {
		return files, err
	}
	if !c.growth {
		return files, nil
	}
	var names []string
	for _, t := range targets[1:] {
		names = append(names, t.name)
	}
	cpu := growthData("connections", "proxy CPU µs per 32 B message, median of the rounds", names, c.conns, func(target string, n int) (float64, bool) {
		return rs.median(rttKey(n), target, func(r *result) float64 { return r.CPUusPerMsg })
	})
	rss := growthData("tunnels", "proxy RSS KiB per idle tunnel, one fresh process per proxy", names, c.steps, func(target string, n int) (float64, bool) {
		return rs.median("idle", target, rssPerTunnel(n))
	})
	for name, b := range map[string][]byte{"growth-cpu.dat": cpu, "growth-rss.dat": rss, "growth.gp": gnuplotScript(c, len(names))} {
		if err := write(name, b); err != nil {
			return files, err
		}
	}
	slices.Sort(files)
	if _, err := exec.LookPath("gnuplot"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no gnuplot on PATH, so no growth.png; the data and growth.gp are written")
		return files, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gnuplot", "growth.gp")
	cmd.Dir = c.out
	if out, err := cmd.CombinedOutput(); err != nil {
		return files, fmt.Errorf("gnuplot growth.gp in %s: %v\n%s", c.out, err, out)
	}
	return append(files, filepath.Join(c.out, "growth.png")), nil
}

// rawJSON is every wsload result with what produced it.
func rawJSON(c *config, rs runs, versions []string) ([]byte, error) {
	type entry struct {
		Key    string          `json:"key"`
		Target string          `json:"target"`
		Round  int             `json:"round"`
		Args   []string        `json:"wsload_args"`
		Result json.RawMessage `json:"wsload"`
	}
	doc := struct {
		Versions []string `json:"versions"`
		Rounds   int      `json:"rounds"`
		Seconds  float64  `json:"seconds_per_run"`
		HoldS    float64  `json:"hold_seconds_per_step"`
		Conns    []int    `json:"rtt_conns"`
		Steps    []int    `json:"idle_steps"`
		Runs     []entry  `json:"runs"`
	}{versions, c.rounds, c.d.Seconds(), c.hold.Seconds(), c.conns, c.steps, nil}
	rs.each(func(key, target string, x sample) {
		doc.Runs = append(doc.Runs, entry{key, target, x.round, x.r.args, x.r.raw})
	})
	return json.MarshalIndent(doc, "", "  ")
}

// rawTSV is every wsload result, one line per run (per step for idle runs).
func rawTSV(rs runs) []byte {
	var b bytes.Buffer
	b.WriteString("key\ttarget\tround\tconns\theld\tmsgs_per_s\tp50_ms\tp99_ms\tmb_per_s_up\thandshakes_per_s\t" +
		"proxy_cpu_us_per_msg\tproxy_cpu_ms_per_mb\tproxy_cpu_us_per_handshake\tproxy_rss_kib_before\tproxy_rss_kib_holding\tproxy_rss_kib_per_conn\n")
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	rs.each(func(key, target string, x sample) {
		r := x.r
		line := func(held int, holding, perConn float64) {
			fmt.Fprintln(&b, strings.Join([]string{key, target, strconv.Itoa(x.round), strconv.Itoa(r.Conns), strconv.Itoa(held),
				g(r.MsgsPerS), g(r.P50ms), g(r.P99ms), g(r.MBpsUp), g(r.HsPerS),
				g(r.CPUusPerMsg), g(r.CPUmsPerMB), g(r.CPUusPerHs), g(r.RSSBeforeKiB), g(holding), g(perConn)}, "\t"))
		}
		if len(r.Steps) == 0 {
			line(0, 0, 0)
		}
		for _, s := range r.Steps {
			line(s.Held, s.RSSHoldingKiB, s.RSSKiBPerConn)
		}
	})
	return b.Bytes()
}

// each calls f for every run, ordered by key, target and round.
func (rs runs) each(f func(key, target string, x sample)) {
	keys := make([]string, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		targets := make([]string, 0, len(rs[k]))
		for t := range rs[k] {
			targets = append(targets, t)
		}
		slices.Sort(targets)
		for _, t := range targets {
			for _, x := range rs[k][t] {
				f(k, t, x)
			}
		}
	}
}

// growthData is a gnuplot data file: a comment, a header line (x and one
// column per target), then one line per count; "-" where nothing was
// measured.
func growthData(x, what string, names []string, counts []int, value func(target string, n int) (float64, bool)) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n%s\t%s\n", what, x, strings.Join(names, "\t"))
	for _, n := range counts {
		b.WriteString(strconv.Itoa(n))
		for _, name := range names {
			if v, ok := value(name, n); ok {
				fmt.Fprintf(&b, "\t%.3f", v)
			} else {
				b.WriteString("\t-")
			}
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// gnuplotScript draws both growth data files side by side in growth.png.
func gnuplotScript(c *config, targets int) []byte {
	return fmt.Appendf(nil, `# Redraw with: gnuplot growth.gp (in this directory)
set terminal pngcairo size 1400,480 font "sans,10"
set output "growth.png"
set datafile missing "-"
set key autotitle columnhead outside right top vertical
set logscale x
set yrange [0:*]
set grid
set multiplot layout 1,2 title "How the cost grows (CPU: median of %s of %v; RSS: %v held at each step, one fresh process)"
set title "proxy CPU per 32 B message"
set xlabel "connections (round trips, one in flight each)"
set ylabel "µs per message"
plot for [i=2:%d] "growth-cpu.dat" using 1:i with linespoints lw 2 pt 7
set title "proxy RSS per idle tunnel"
unset logscale x
set xrange [0:*]
set xlabel "idle tunnels held"
set ylabel "KiB per tunnel"
plot for [i=2:%d] "growth-rss.dat" using 1:i with linespoints lw 2 pt 7
unset multiplot
`, rounds(c.rounds), c.d, c.hold, targets+1, targets+1)
}
