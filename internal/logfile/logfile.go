// Package logfile is log_file: a file appended to, and reopened on
// SIGUSR1 so logrotate can move it away (the "create" style, no
// copytruncate needed).
package logfile

import (
	"os"
	"sync"
)

// File is an open log file; Write may run while Reopen does.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Open opens path for appending, creating it if need be.
func Open(path string) (*File, error) {
	l := &File{path: path}
	return l, l.Reopen()
}

// Path is the file's path, as given to Open.
func (l *File) Path() string { return l.path }

func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path afresh, then closes the old file.
func (l *File) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
