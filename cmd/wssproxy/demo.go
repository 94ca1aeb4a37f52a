package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
)

// startDemoBackend runs the echo backend of -demo on addr, in this process.
// It returns the address it listens on and a function that stops it.
func startDemoBackend(addr string, bg *sync.WaitGroup) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("demo backend: %w (is a backend already running there? choose another with -demo-backend)", err)
	}
	srv := &http.Server{Handler: echo.Handler(echo.Options{}), ReadHeaderTimeout: 10 * time.Second}
	bg.Go(func() { srv.Serve(ln) })
	return ln.Addr().String(), func() { srv.Close() }, nil
}
