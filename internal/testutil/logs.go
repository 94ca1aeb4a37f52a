package testutil

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Logs is a log destination (a stderr, a slog handler's writer) that tests
// can read and wait on while others write to it.
type Logs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
	return l.buf.Write(p)
}

func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the lines that contain all of subs.
func (l *Logs) Lines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// Wait blocks until the log matches re, or fails the test when ctx ends.
// It returns the first submatch, or the whole match without one.
func (l *Logs) Wait(t testing.TB, ctx context.Context, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for {
		l.mu.Lock()
		m := rx.FindStringSubmatch(l.buf.String())
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		if m != nil {
			return m[len(m)-1]
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("log never matched %q:\n%s", re, l.String())
		}
	}
}
