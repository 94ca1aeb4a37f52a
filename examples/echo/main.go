// Command echo is the demo WebSocket backend on its own: it echoes every
// message and serves a test page, as plain ws:// on 127.0.0.1:8282 (where
// Workerman's examples listen). Put wssproxy in front of it:
//
//	go run ./examples/echo &
//	go run ./cmd/wssproxy
//
// then open https://localhost:8443/wss in a WebSocket client.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/wssproxy/wssproxy/internal/echo"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8282", "address to listen on")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: echo.Handler(echo.Options{}), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "echo backend on ws://%s\n", *addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
