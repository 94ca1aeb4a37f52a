package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// result is one run's JSON line. Rates are per second of the measured
// window; proxy_* fields appear with -pids.
type result struct {
	Mode      string  `json:"mode"`
	URL       string  `json:"url"`
	Conns     int     `json:"conns"`
	Size      int     `json:"size,omitempty"`
	Seconds   float64 `json:"seconds"`
	Messages  int64   `json:"messages,omitempty"`
	MsgsPerS  float64 `json:"msgs_per_s,omitempty"`
	P50ms     float64 `json:"p50_ms,omitempty"`
	P90ms     float64 `json:"p90_ms,omitempty"`
	P99ms     float64 `json:"p99_ms,omitempty"`
	MaxMs     float64 `json:"max_ms,omitempty"`
	MBUp      float64 `json:"mb_up,omitempty"`
	MBDown    float64 `json:"mb_down,omitempty"`
	MBpsUp    float64 `json:"mb_per_s_up,omitempty"`
	MBpsDown  float64 `json:"mb_per_s_down,omitempty"`
	Handshake int64   `json:"handshakes,omitempty"`
	HsPerS    float64 `json:"handshakes_per_s,omitempty"`
	Opened    int     `json:"opened,omitempty"`
	Echoed    int     `json:"still_echoing,omitempty"`

	PIDs           []int   `json:"pids,omitempty"`
	ProxyCPUs      float64 `json:"proxy_cpu_s,omitempty"`
	CPUusPerMsg    float64 `json:"proxy_cpu_us_per_msg,omitempty"`
	CPUmsPerMB     float64 `json:"proxy_cpu_ms_per_mb,omitempty"`
	CPUusPerHs     float64 `json:"proxy_cpu_us_per_handshake,omitempty"`
	RSSBeforeKiB   int64   `json:"proxy_rss_kib_before,omitempty"`
	RSSHoldingKiB  int64   `json:"proxy_rss_kib_holding,omitempty"`
	RSSKiBPerConn  float64 `json:"proxy_rss_kib_per_conn,omitempty"`
	ProxyCPUHoldMs float64 `json:"proxy_cpu_ms_while_holding,omitempty"`

	// Steps (idle) has what was read at each -steps count; the proxy_*
	// fields above are the last step's.
	Steps []idleStep `json:"steps,omitempty"`

	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// idleStep is what the idle mode read while holding Held connections.
type idleStep struct {
	Held           int     `json:"held"`
	RSSHoldingKiB  int64   `json:"proxy_rss_kib_holding,omitempty"`
	RSSKiBPerConn  float64 `json:"proxy_rss_kib_per_conn,omitempty"`
	ProxyCPUHoldMs float64 `json:"proxy_cpu_ms_while_holding,omitempty"`
}

// human is the line for people.
func (r *result) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", r.Mode, r.URL)
	switch r.Mode {
	case "rtt":
		fmt.Fprintf(&b, "%d conns, %d B: %.0f msgs/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
			r.Conns, r.Size, r.MsgsPerS, r.P50ms, r.P90ms, r.P99ms, r.MaxMs)
	case "throughput":
		fmt.Fprintf(&b, "%d conns, %d B: %.1f MB/s up, %.1f MB/s down", r.Conns, r.Size, r.MBpsUp, r.MBpsDown)
	case "handshake":
		fmt.Fprintf(&b, "%.0f handshakes/s, p50 %.2f ms, p99 %.2f ms", r.HsPerS, r.P50ms, r.P99ms)
	case "idle":
		fmt.Fprintf(&b, "%d of %d opened, %d still echo after %.0f s", r.Opened, r.Conns, r.Echoed, r.Seconds)
	}
	if len(r.PIDs) > 0 {
		switch r.Mode {
		case "rtt":
			fmt.Fprintf(&b, "; proxy CPU %.1f µs/msg", r.CPUusPerMsg)
		case "throughput":
			fmt.Fprintf(&b, "; proxy CPU %.2f ms/MB", r.CPUmsPerMB)
		case "handshake":
			fmt.Fprintf(&b, "; proxy CPU %.0f µs/handshake", r.CPUusPerHs)
		case "idle":
			fmt.Fprintf(&b, "; proxy RSS %d → %d KiB, %.1f KiB per connection", r.RSSBeforeKiB, r.RSSHoldingKiB, r.RSSKiBPerConn)
			if len(r.Steps) > 1 {
				held, per := make([]string, len(r.Steps)), make([]string, len(r.Steps))
				for i, s := range r.Steps {
					held[i], per[i] = strconv.Itoa(s.Held), fmt.Sprintf("%.1f", s.RSSKiBPerConn)
				}
				fmt.Fprintf(&b, " (at %s held: %s)", strings.Join(held, "/"), strings.Join(per, "/"))
			}
		}
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "; %d errors (%s)", r.Errors, r.FirstError)
	}
	return b.String()
}

// errs counts a run's errors and keeps the first.
type errs struct {
	mu    sync.Mutex
	n     int64
	first string
}

func (e *errs) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.first = err.Error()
	}
	e.n++
}

func (e *errs) into(r *result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r.Errors, r.FirstError = e.n, e.first
}

// latencies sets the percentiles from every worker's samples and returns
// how many there were.
func (r *result) latencies(per [][]time.Duration) int64 {
	var all []time.Duration
	for _, s := range per {
		all = append(all, s...)
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	at := func(q float64) float64 {
		i := int(q * float64(len(all)-1))
		return float64(all[i]) / float64(time.Millisecond)
	}
	r.P50ms, r.P90ms, r.P99ms, r.MaxMs = at(0.50), at(0.90), at(0.99), at(1)
	return int64(len(all))
}

// procs reads CPU time and RSS of a set of processes and their children.
type procs struct{ pids []int }

// clockTick is USER_HZ: /proc reports CPU time in these. It is 100 on every
// Linux architecture Go supports.
const clockTick = 100

// members is the given PIDs plus every process whose parent is one of them
// (nginx and HAProxy workers), read afresh each time.
func (p procs) members() []int {
	set := map[int]bool{}
	for _, pid := range p.pids {
		set[pid] = true
	}
	out := slices.Clone(p.pids)
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := statFields(b)
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if set[ppid] {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, pid)
		}
	}
	return out
}

// statFields splits /proc/PID/stat after the command name, which may hold
// spaces: fields[0] is the state, fields[1] the parent PID.
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// cpu is the user plus system time of the processes.
func (p procs) cpu() time.Duration {
	var ticks int64
	for _, pid := range p.members() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := statFields(b)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		s, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// rss is the resident memory of the processes in KiB.
func (p procs) rss() int64 {
	var kib int64
	for _, pid := range p.members() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				kib += n
			}
		}
	}
	return kib
}
