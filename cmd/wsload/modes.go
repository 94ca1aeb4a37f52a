package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// window is the measured part of a run: messages before from (the warm-up)
// and after to are not counted, and the processes' CPU is read at both ends.
type window struct {
	from, to time.Time
	p        procs
	cpu      time.Duration        // after wait: CPU spent by p inside the window
	pace     func(i, k int) error // if set, waits before worker i's call k (-rate)
}

func newWindow(o *options) *window {
	from := time.Now().Add(o.warmup)
	return &window{from: from, to: from.Add(o.duration), p: procs{o.pids}}
}

// drainGrace is how long after the window's end the echoes still in flight
// may take; it bounds a run to its -warmup, -d and this.
const drainGrace = 5 * time.Second

func (w *window) in(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

// sample runs workers goroutines, each calling op with its index and its
// count of calls so far, over and over until the window ends, ctx ends or
// op says stop. A call that op says is ok and that began inside the window
// is a sample of its duration. sample returns each worker's samples once
// measure and every worker are done.
func (w *window) sample(ctx context.Context, workers, capHint int, op func(i, k int) (ok, stop bool)) ([][]time.Duration, error) {
	samples := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			s := make([]time.Duration, 0, capHint)
			for k := 0; ctx.Err() == nil; k++ {
				if w.pace != nil && w.pace(i, k) != nil {
					break
				}
				t0 := time.Now()
				if !t0.Before(w.to) {
					break
				}
				ok, stop := op(i, k)
				if stop {
					break
				}
				if ok && w.in(t0) {
					s = append(s, time.Since(t0))
				}
			}
			samples[i] = s
		})
	}
	merr := w.measure(ctx)
	wg.Wait()
	if merr != nil {
		return nil, merr
	}
	return samples, nil
}

// measure sleeps to the window's start, reads CPU, sleeps to its end and
// reads CPU again. It returns early if ctx ends.
func (w *window) measure(ctx context.Context) error {
	if err := sleep(ctx, time.Until(w.from)); err != nil {
		return err
	}
	cpu0 := w.p.cpu()
	if err := sleep(ctx, time.Until(w.to)); err != nil {
		return err
	}
	w.cpu = w.p.cpu() - cpu0
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *options) newResult() *result {
	return &result{Mode: o.mode, URL: o.target.String(), Conns: o.conns, Size: o.size, Seconds: o.duration.Seconds(), PIDs: o.pids}
}

// source is the local address of connection i: spread over 127.0.0.1 …
// 127.0.0.N so that many connections to one loopback port are not limited
// by one address's ephemeral ports. nil lets the kernel choose.
func (o *options) source(i int) net.Addr {
	if o.sources <= 1 || !isLoopback(o.target.Hostname()) {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%o.sources))}
}

// openAll opens n connections, at most par at a time, each within 30 s.
// They close when ctx ends.
func openAll(ctx context.Context, o *options, n, par int) ([]*conn, error) {
	return openMore(ctx, o, 0, n, par)
}

// openMore is openAll for connections first … first+n-1 of a run, so that
// a run opening in several batches spreads all of them over the sources.
func openMore(ctx context.Context, o *options, first, n, par int) ([]*conn, error) {
	conns := make([]*conn, n)
	var wg sync.WaitGroup
	var failed errs
	sem := make(chan struct{}, par)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := o.dialer.dial(dctx, o.source(first+i))
			if err != nil {
				failed.add(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if failed.n > 0 {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		return nil, fmt.Errorf("%d of %d connections failed to open, first: %s", failed.n, n, failed.first)
	}
	context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.nc.Close()
		}
	})
	return conns, nil
}

func closeAll(conns []*conn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() { defer func() { <-sem }(); c.close() })
	}
	wg.Wait()
}

func payload(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// runRTT: each connection sends a message and waits for its echo, over and
// over; every round trip inside the window is a sample.
func runRTT(ctx context.Context, o *options) (*result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns, err := openAll(ctx, o, o.conns, 64)
	if err != nil {
		return nil, err
	}
	w := newWindow(o)
	for _, c := range conns {
		// The last echo is due within drainGrace of the window's end: a
		// lost message fails the run instead of stalling it.
		c.nc.SetReadDeadline(w.to.Add(drainGrace))
	}
	var failed errs
	msg := payload(o.size) // only read: shared by the workers
	// With -rate each connection sends on a schedule of its own, its
	// phase spread over the interval so that the load is even: a round
	// trip late on its schedule goes at once (the rate is then not met,
	// and msgs/s says so).
	if o.rate > 0 {
		interval := time.Duration(float64(len(conns)) / o.rate * float64(time.Second))
		start := time.Now()
		w.pace = func(i, k int) error {
			due := start.Add(interval*time.Duration(i)/time.Duration(len(conns)) + interval*time.Duration(k))
			return sleep(ctx, time.Until(due))
		}
	}
	samples, merr := w.sample(ctx, len(conns), 4096, func(i, _ int) (ok, stop bool) {
		c := conns[i]
		if err := c.writeFrame(wsframe.OpBinary, msg); err != nil {
			failed.add(err)
			return false, true
		}
		_, got, err := c.readMessage()
		if err != nil {
			failed.add(err)
			return false, true
		}
		if len(got) != len(msg) {
			failed.add(fmt.Errorf("echo of %d bytes, sent %d", len(got), len(msg)))
			return false, true
		}
		return true, false
	})
	if merr != nil {
		return nil, merr
	}
	for _, c := range conns {
		c.nc.SetReadDeadline(time.Time{})
	}
	closeAll(conns)
	r := o.newResult()
	r.Messages = r.latencies(samples)
	r.MsgsPerS, r.CPUusPerMsg = o.perSample(r, r.Messages, w.cpu)
	failed.into(r)
	return r, nil
}

// runThroughput: each connection keeps -window messages of -size bytes in
// flight; the bytes of the messages sent inside the window count, up when
// sent and down when their echo arrives (echoes come back in order, so the
// reader knows which is which). An echo that arrives just after the
// window, as on a machine that stalled for a moment, still counts: a
// message's trip is all or nothing, however the window cuts it.
func runThroughput(ctx context.Context, o *options) (*result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns, err := openAll(ctx, o, o.conns, 64)
	if err != nil {
		return nil, err
	}
	w := newWindow(o)
	var up, down atomic.Int64
	var failed errs
	var wg sync.WaitGroup
	for _, c := range conns {
		tokens := make(chan struct{}, o.window)
		for range o.window {
			tokens <- struct{}{}
		}
		var written, read atomic.Int64
		var before atomic.Int64 // messages written before the window opened
		var writerDone atomic.Bool
		wg.Go(func() { // writer
			defer writerDone.Store(true)
			msg := payload(o.size)
			for {
				select {
				case <-tokens:
				case <-ctx.Done():
					return
				}
				now := time.Now()
				if !now.Before(w.to) {
					// The reader collects what is in flight, within
					// drainGrace, then stops; with nothing in flight it
					// stops now. writerDone is stored before read is
					// loaded: either the reader sees it after its last
					// read, or this sees that read.
					writerDone.Store(true)
					until := now.Add(drainGrace)
					if read.Load() == written.Load() {
						until = now
					}
					c.nc.SetReadDeadline(until)
					return
				}
				if now.Before(w.from) { // counted before the write: its echo cannot come first
					before.Add(1)
				}
				if err := c.writeFrame(wsframe.OpBinary, msg); err != nil {
					failed.add(err)
					return
				}
				written.Add(1)
				if w.in(now) {
					up.Add(int64(len(msg)))
				}
			}
		})
		wg.Go(func() { // reader
			for {
				if writerDone.Load() && read.Load() == written.Load() {
					return
				}
				_, got, err := c.readMessage()
				if err != nil {
					if !(writerDone.Load() && read.Load() == written.Load()) && ctx.Err() == nil {
						failed.add(err)
					}
					return
				}
				if read.Add(1) > before.Load() { // the echo of a message sent in the window
					down.Add(int64(len(got)))
				}
				tokens <- struct{}{}
			}
		})
	}
	merr := w.measure(ctx)
	wg.Wait()
	if merr != nil {
		return nil, merr
	}
	for _, c := range conns {
		c.nc.SetReadDeadline(time.Time{})
	}
	closeAll(conns)
	r := o.newResult()
	r.MBUp, r.MBDown = float64(up.Load())/1e6, float64(down.Load())/1e6
	r.MBpsUp, r.MBpsDown = r.MBUp/o.duration.Seconds(), r.MBDown/o.duration.Seconds()
	if len(o.pids) > 0 && r.MBUp+r.MBDown > 0 {
		r.ProxyCPUs = w.cpu.Seconds()
		r.CPUmsPerMB = float64(w.cpu.Microseconds()) / 1000 / (r.MBUp + r.MBDown)
	}
	failed.into(r)
	return r, nil
}

// runHandshake: each of -c workers opens a connection (a full TLS handshake
// unless -resume), upgrades, echoes one message and closes, over and over.
func runHandshake(ctx context.Context, o *options) (*result, error) {
	w := newWindow(o)
	var failed errs
	msg := payload(o.size) // only read: shared by the workers
	samples, merr := w.sample(ctx, o.conns, 1024, func(i, k int) (ok, stop bool) {
		if err := handshakeOnce(ctx, o, i+k*o.conns, msg); err != nil {
			if ctx.Err() == nil {
				failed.add(err)
			}
			return false, false
		}
		return true, false
	})
	if merr != nil {
		return nil, merr
	}
	r := o.newResult()
	r.Handshake = r.latencies(samples)
	r.HsPerS, r.CPUusPerHs = o.perSample(r, r.Handshake, w.cpu)
	failed.into(r)
	return r, nil
}

func handshakeOnce(ctx context.Context, o *options, n int, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := o.dialer.dial(ctx, o.source(n))
	if err != nil {
		return err
	}
	defer c.close()
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.writeFrame(wsframe.OpText, msg); err != nil {
		return err
	}
	_, got, err := c.readMessage()
	if err != nil {
		return err
	}
	if len(got) != len(msg) {
		return fmt.Errorf("echo of %d bytes, sent %d", len(got), len(msg))
	}
	return nil
}

// runIdle opens -n connections, holds them silent (answering pings) for
// -hold, reads the processes' RSS while holding, then checks that each one
// still echoes. With -steps it opens up to each step's count in turn and
// holds and reads at each, so one fresh process shows how RSS per
// connection grows.
func runIdle(ctx context.Context, o *options) (*result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := procs{o.pids}
	rss0 := p.rss()
	var conns []*conn
	var echoes []chan error
	r := o.newResult()
	for _, n := range o.steps {
		more, err := openMore(ctx, o, len(conns), n-len(conns), o.conns)
		if err != nil {
			return nil, err
		}
		for _, c := range more {
			echo := make(chan error, 1)
			echoes = append(echoes, echo)
			go func() { // answers pings while idle; delivers the echo check
				_, _, err := c.readMessage()
				echo <- err
			}()
		}
		conns = append(conns, more...)
		fmt.Fprintf(os.Stderr, "wsload: %d connections open, holding them for %v\n", len(conns), o.hold)
		cpu0 := p.cpu()
		if err := sleep(ctx, o.hold); err != nil {
			return nil, err
		}
		if len(o.pids) > 0 {
			r.ProxyCPUHoldMs = float64((p.cpu() - cpu0).Microseconds()) / 1000
			r.RSSBeforeKiB, r.RSSHoldingKiB = rss0, p.rss()
			r.RSSKiBPerConn = float64(r.RSSHoldingKiB-r.RSSBeforeKiB) / float64(len(conns))
		}
		r.Steps = append(r.Steps, idleStep{Held: len(conns), RSSHoldingKiB: r.RSSHoldingKiB,
			RSSKiBPerConn: r.RSSKiBPerConn, ProxyCPUHoldMs: r.ProxyCPUHoldMs})
	}
	r.Conns, r.Size, r.Seconds, r.Opened = o.count, 0, o.hold.Seconds(), len(conns)
	var failed errs
	msg := payload(32)
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range conns {
		c.nc.SetDeadline(deadline)
		c.writeFrame(wsframe.OpText, msg) // a failure shows as the reader's error
	}
	for i := range conns {
		if err := <-echoes[i]; err != nil {
			failed.add(fmt.Errorf("connection %d after holding: %w", i, err))
			continue
		}
		r.Echoed++
	}
	for _, c := range conns {
		c.nc.SetDeadline(time.Time{})
	}
	closeAll(conns)
	failed.into(r)
	return r, nil
}

// perSample is the rate of n samples (messages, handshakes) over the run,
// and, when the proxy's processes are watched (-pid) and there are
// samples, the proxy's CPU microseconds per sample; r gets the CPU total.
func (o *options) perSample(r *result, n int64, cpu time.Duration) (perS, cpuUsPer float64) {
	perS = float64(n) / o.duration.Seconds()
	if len(o.pids) > 0 && n > 0 {
		r.ProxyCPUs = cpu.Seconds()
		cpuUsPer = float64(cpu.Microseconds()) / float64(n)
	}
	return perS, cpuUsPer
}
