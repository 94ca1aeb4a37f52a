// Package proxy is wssproxy's data path: routing, the WebSocket tunnel, and
// plain HTTP proxying, behind listeners the caller provides (TLS listeners
// from package tlsconf; this package never touches a key).
//
// # A request, step by step
//
//  1. Accept and TLS handshake: net/http's server, on the caller's
//     listener. ReadHeaderTimeout bounds the TLS handshake and the request
//     headers; MaxHeaderBytes caps the headers (server.go).
//  2. Route: Server.ServeHTTP cleans the path (dot segments and repeated
//     slashes resolved, so "/wss/../admin" cannot reach /wss's backend) and
//     the router picks the most specific route: exact host, then wildcard
//     host, then any host; an exact path before the longest prefix, which
//     matches at segment boundaries only (route.go). No route: 404.
//  3. Plain HTTP (no "Upgrade: websocket"): the route's handler, a
//     net/http/httputil.ReverseProxy flushing every write (long polling,
//     streaming), a static directory, or an in-process Handler
//     (httpproxy.go). Other Upgrade tokens are dropped, not tunnelled.
//  4. WebSocket handshake: checked against RFC 6455 §4.2.1 before anything
//     reaches a backend (handshake.go): 400 with the reason, or 426 for a
//     version other than 13.
//  5. Backend first (websocket.go): the backend is dialed (DialTimeout; a
//     failure is 502) and sent the client's handshake over HTTP/1.1 with the
//     client's end-to-end headers intact, hop-by-hop headers removed
//     (RFC 9110 §7.6.1), incoming forwarding headers replaced by the
//     proxy's own from the TCP peer (headers.go), then the route's
//     remove_headers and set_headers. The client is not touched until the
//     backend answers: within HandshakeTimeout (else 504). Any answer but
//     101 is relayed as it is; a 101 without "Upgrade: websocket" is 502.
//     Errors the proxy makes itself carry an X-Wssproxy-Error header; their
//     bodies never name a backend (the log line does).
//  6. Upgrade: only now is the client hijacked and sent the backend's 101
//     (Sec-WebSocket-Accept, subprotocol and extensions as the backend
//     chose them, so they negotiate end to end).
//  7. Tunnel (tunnel.go): bytes the server read ahead of the hijack and
//     bytes that came with the backend's 101 are forwarded first. Then two
//     named directions, copyToBackend (in a goroutine) and copyFromBackend
//     (on the handler's goroutine), each a read/write loop over one pooled
//     16 KiB buffer. A direction that reaches a clean end of stream
//     half-closes its destination (TLS close_notify then TCP FIN towards
//     the client; FIN towards the backend) and the other direction keeps
//     flowing; a direction that fails closes both connections. The tunnel
//     returns, and logs one line, only when both directions have ended.
//
// # Timeouts and shutdown
//
// Hijacking clears net/http's deadlines, and no timeout ends an open
// tunnel: an idle WebSocket may live for hours. Dead peers are found by TCP
// keepalive (Go's default, 15 s idle) on both sockets. Every request and
// tunnel derives from the Server's context; Shutdown closes the listeners,
// waits for tunnels (which http.Server.Shutdown cannot see once hijacked)
// until its context ends, then cancels the Server's context, which closes
// every tunnel's two connections through context.AfterFunc.
//
// # The hot path
//
// Per message the tunnel does one Read and one Write per direction on a
// buffer taken from a sync.Pool when the tunnel starts: no locks, no
// allocations, no logging, no clock reads. Frames are not parsed: the
// tunnel is byte-transparent.
package proxy
