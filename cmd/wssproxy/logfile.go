package main

import (
	"io"
	"log/slog"
)

// newLogger builds the process's logger: text or JSON lines to w.
func newLogger(format string, w io.Writer, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
