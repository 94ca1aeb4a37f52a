package proxy

import (
	"net/http"
	"time"
)

// loggedWriter notes the status and body bytes of a plain HTTP response
// for its access log line. Unwrap keeps Flush (streaming) and Hijack
// reachable through http.ResponseController.
type loggedWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggedWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggedWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *loggedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming responses streaming (ReverseProxy asserts it).
func (w *loggedWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// servePlain serves a plain HTTP request on rt and writes its access log
// line: client, host, method, path, route, backend, status, bytes, time.
func (s *Server) servePlain(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	r, ok := s.authorize(w, r, rt)
	if !ok {
		return
	}
	lw := &loggedWriter{ResponseWriter: w}
	rt.http.ServeHTTP(lw, r)
	if w.Header().Get(errorHeader) != "" {
		return // refuse logged it already: one line per request
	}
	status := lw.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []any{"client_ip", clientIP(r), "host", r.Host, "method", r.Method, "path", r.URL.Path,
		"route", rt.name, "backend", rt.backendString(), "status", status, "bytes_out", lw.bytes,
		"duration", time.Since(start).Round(time.Microsecond), "proto", r.Proto}
	s.log.Info("request", append(attrs, authAttrs(authOf(r))...)...)
}
