// Package proxy is wssproxy's data path: routing, the WebSocket tunnel, and
// plain HTTP proxying, behind listeners the caller provides (TLS listeners
// from package tlsconf; this package never touches a key, and does not
// import tlsconf, so it never links ACME: backend_ca is read with
// internal/certpool, the hsts value checked in hsts.go).
//
// A Config is checked and compiled once, by Compile (compile.go), the only
// validator: every route's path, host, backends, origins and headers are
// parsed there, backend_ca read, and every problem reported as a
// FieldError naming its key. New and Reload serve what it compiled: build
// (server.go) binds the compiled routes to the Server's backends and
// handlers as one state, which a reload replaces whole.
//
// # A request, step by step
//
//  1. Accept and TLS handshake: net/http's server, on the caller's
//     listener. Every accepted socket counts against
//     max_client_connections until it is closed, and is one descriptor of
//     the descriptor budget, charged to its TCP peer's share (fdbudget.go);
//     over either a new one is closed at once (connlimit.go). ServeTLS reads a PROXY protocol
//     header next, from proxy_protocol_from peers only (realip.go).
//     ReadHeaderTimeout bounds the TLS handshake and the request headers;
//     MaxHeaderBytes caps the headers (server.go). Above TLS each
//     connection is a clientConn (conn.go): it follows the HTTP/1 request
//     stream's framing (framing.go) and logs and counts the answers
//     net/http gives by itself (431, 400, 501, a header timeout). A
//     hijacked connection leaves it: the tunnel has the *tls.Conn.
//     HTTP/2 connections are not followed; with http2_websockets = true
//     (off by default: a stream's messages cost more CPU than a tunnel's
//     own socket, docs/performance.md) their SETTINGS advertise extended
//     CONNECT (RFC 8441), so browsers open WebSockets as streams of them
//     (see "WebSockets over HTTP/2").
//  2. Client address (realip.go), worked out once per request: the TCP
//     peer (or the PROXY header's address), unless the peer is in
//     trusted_proxies; then real_ip_header, with X-Forwarded-For walked
//     from the right past trusted hops. It feeds X-Real-IP, the logs, the
//     limits and ip_hash.
//  3. Route: Server.ServeHTTP first claims the request's head from its
//     connection's framing: with both Content-Length and
//     Transfer-Encoding, 400 and the connection closed (RFC 9112 §6.1);
//     a head the framing could not follow is served and the connection
//     closed after it. It sets Strict-Transport-Security (Config.HSTS,
//     over TLS only; a backend's own is replaced), cleans the path (dot
//     segments and repeated slashes resolved, so "/wss/../admin" cannot
//     reach /wss's backend) and the router picks the most specific route: exact host, then wildcard
//     host, then any host; an exact path before the longest prefix, which
//     matches at segment boundaries only (route.go). No route: 404.
//     "/admin" on a route "/admin/" with auth that another route would
//     serve without it: 301 to "/admin/" (handler.go), as nginx answers.
//  4. Plain HTTP (no "Upgrade: websocket"): the route's handler, a
//     net/http/httputil.ReverseProxy flushing every write (long polling,
//     streaming), a static directory, or an in-process Handler
//     (httpproxy.go). Other Upgrade tokens are dropped, not tunnelled.
//  5. WebSocket handshake: checked against RFC 6455 §4.2.1 before anything
//     reaches a backend (handshake.go): 400 with the reason, or 426 for a
//     version other than 13. Over HTTP/2 the handshake is a CONNECT with
//     :protocol websocket and version 13 (h2stream.go; another :protocol
//     is 400, a plain CONNECT 405, :protocol on another method 400).
//     Then (after the Origin check and the limits) the route's auth
//     (auth.go), for handshakes and plain requests
//     alike, before any backend is dialed: client_cert (authcert.go; the
//     certificate was verified in the TLS handshake), basic_auth
//     (internal/htpasswd), [route.jwt] (authjwt.go, authjwks.go) and
//     forward_auth (authforward.go), in that order. A refusal is 401, 403,
//     the auth service's own answer, or 503/504 when it fails; what passed
//     rides on the request's context to the backend's headers, the access
//     line and the tunnel (a token's exp becomes a per-tunnel timer:
//     1008 to the client, 1001 to the backend). Nothing here is per
//     message.
//  6. Backend first (websocket.go): the route's pool (upstream.go) orders
//     its backends for this client (smooth weighted round robin,
//     least_conn, or weighted rendezvous hashing for ip_hash; backends out
//     of rotation last, or not at all while others are in); they are
//     dialed in that order until one connects (DialTimeout each; failures
//     count towards max_fails; none left: 502; the proxy's own EMFILE is
//     503 out-of-descriptors and no backend's failure). The backend is sent the
//     client's handshake over HTTP/1.1 with the client's end-to-end
//     headers intact, hop-by-hop headers removed (RFC 9110 §7.6.1), names
//     with "_" dropped (unless underscores_in_headers), incoming forwarding
//     headers and a single-address real_ip_header replaced by the proxy's
//     own from step 2 (headers.go), then the route's remove_headers and
//     set_headers, then what its auth found (applyAuth: identity headers,
//     a token taken out of Sec-WebSocket-Protocol). Over HTTP/2 the proxy is the backend's WebSocket client:
//     the same headers, a GET with Upgrade and a fresh Sec-WebSocket-Key,
//     and a 101 whose Sec-WebSocket-Accept does not answer it is 502. The
//     client is not touched until the backend answers: within
//     HandshakeTimeout (else 504). A client that leaves meanwhile (its
//     connection or stream reset) ends the dial or the wait; that is its
//     doing, not the backend's (errClientGone: debug, counted as
//     client-gone). Any answer but 101 is relayed as it is; a 101 without
//     "Upgrade: websocket" is 502.
//     Errors the proxy makes itself carry an X-Wssproxy-Error header; their
//     bodies never name a backend (the log line does).
//  7. Upgrade: only now is the client hijacked and sent the backend's 101
//     (Sec-WebSocket-Accept, subprotocol and extensions as the backend
//     chose them, so they negotiate end to end). Over HTTP/2 nothing is
//     hijacked: the stream is answered 200 with the 101's headers less
//     Sec-WebSocket-Accept, and becomes a net.Conn (h2Stream).
//  8. Tunnel (tunnels.go, internal/tunnel): runTunnel makes each
//     connection a side of the socket engine (internal/sockio: raw or
//     portable, below), gives the tunnel its route's Policy (timeouts and
//     limits) and byte meter, enters it in the Server's table of open
//     tunnels, and starts it; the handler returns, so net/http's goroutine
//     for the connection ends. Over HTTP/2 the stream lives while its
//     handler runs, so the handler (a goroutine per stream, not the
//     connection's) runs the client's pump itself (Tunnel.StartBackend,
//     then PumpClient: one goroutine fewer per idle tunnel) and then waits
//     until the tunnel has closed the stream.
//     Each side has a pump (sockio.Conn.Pump), which reads it and feeds a
//     frame scanner (internal/wsframe, the module's one frame codec) that
//     reads frame headers only: payloads are never unmasked or buffered,
//     and the bytes out are the bytes in, written to the other side under
//     that side's write lock. Bytes the server read ahead of the hijack and
//     bytes that came with the backend's 101 go through first. Control
//     frames (at most 131 bytes) are held whole, which lets the tunnel
//     consume the pongs answering its own pings and the close frames
//     answering its own closes. A route with message-rate limits
//     (ratelimit.go; internal/tunnel's ratelimit.go) has the scanner ask
//     at each of the client's data frame headers (wsframe.Hooks.Admit):
//     without tokens the pump stops before that header, having written
//     what came before it, and waits with no lock held, reading nothing
//     more of the client.
//  9. The proxy's own frames (internal/tunnel's frames.go and side.go):
//     pings and close frames are queued per side and written at the next
//     frame boundary of that side's output, under the same lock as the
//     pump that writes there (between two fragments of a message is a
//     boundary: RFC 6455 §5.4). A timer never waits for the lock: if the
//     pump holds it, the pump writes the queue after its own write. A
//     ping's ping_timeout counts from when it is written, not queued.
//
// # Who owns what
//
//   - The socket engine (internal/sockio, one Engine per Server, closed by
//     it) owns how a side's socket is read and written, and on which
//     goroutine its pump runs. The portable engine, the default off Linux
//     and for every connection that is not a plain socket (an
//     HTTP/2 stream, a PROXY protocol reader, TLS towards a backend),
//     reads with net.Conn.Read on a goroutine per side. The raw engine
//     (Linux; WSSPROXY_RAWIO=0 turns it off) serves TCP and unix sockets,
//     plain or under the client's TLS (the accepted boundConn is its
//     sockio.Underlay): read(2) inside syscall.RawConn.Read, no read that
//     finds the socket empty after a short one (an end of stream that came
//     with the data is an EPOLLRDHUP event of the engine's poller), and a
//     side idle for a whole sweep period (1 to 2 s) parks: its goroutine
//     ends, the poller watches its socket, and a fresh goroutine takes the
//     pump up when the socket has something or the side is closed. An idle
//     tunnel then holds no goroutine. The tunnel's access line says which
//     engine served it (io=raw, io=portable); wssproxy_parked_sides counts
//     parked sides. Every assumption the raw engine makes about Go and the
//     kernel has a contract test of its own (contract_linux_test.go).
//   - The tunnel (internal/tunnel) owns the WebSocket: frames, close
//     handshakes, keepalive, limits, and the decision that it has ended,
//     made in one place (sideEnded) when both pumps have ended; it then
//     closes both connections and tells the Server, once, how it ended
//     (tunnel.End: a Reason, the first close frame, bytes each way).
//   - The Server owns admission and bookkeeping: the table of open
//     tunnels (which a drain or a hard stop walks), the access log line,
//     the metrics, and releasing what the handshake held (limits, the
//     backend's connection count, the tunnel count Shutdown waits for).
//
// # How a tunnel ends
//
// (internal/tunnel: tunnel.go's pumpEnd, keepalive.go's timers.)
// Hijacking clears net/http's deadlines: its timeouts bound the handshake
// only, and nothing ends an open tunnel but the peers or the limits below.
// TCP keepalive (Go's default, 15 s idle) runs on both sockets as well.
//
//   - A peer's close frame is forwarded; after it nothing more goes that
//     way. At that peer's end of stream the other side is half-closed (TLS
//     close_notify then FIN towards the client; FIN towards the backend) and
//     the other direction flows until it ends too. An HTTP/2 stream has no
//     half-close in Go 1.27 (END_STREAM goes out only when the handler
//     returns, which ends reading too), so the client's stream is ended
//     instead: at once if its own close frame has passed, else as soon as
//     it passes, or the close grace later if it never comes.
//   - A peer that ends without a close frame: the other side gets one (1014
//     to the client, 1001 to the backend), then the close grace (5 s) to
//     answer.
//     But if the other side had sent its close, the drop is its answer (RFC
//     6455 §7.1.1 allows it after a protocol error): it is passed on, as the
//     other side would see it directly. A peer that ends mid-frame: the
//     other side's connection is closed, as its stream cannot be finished.
//   - send_timeout: every write to a peer, data or the proxy's own frames,
//     has a write deadline (moved about once per send_timeout/8, not per
//     write). A write not finished in send_timeout (one read's worth, up
//     to 64 KiB) means that peer stopped reading: it is dropped and the
//     other side gets a close frame (1014 to the client, 1001 to the
//     backend). A bound per write, not per byte: over TLS a timed-out
//     write cannot be resumed.
//   - The proxy closing a side (sockio.Conn.Close, from any goroutine):
//     on the raw engine a socket whose pump is inside RawConn.Read is shut
//     down, which its peer sees at once and which fails a write to it
//     blocked elsewhere; the pump, which holds the socket's read lock that
//     Close waits for, closes it when it next looks. A parked side is taken
//     back from the poller, closed, and its pump resumed to end.
//   - Keepalive (internal/tunnel's keepalive.go): a side silent for
//     ping_interval is pinged with the proxy's token; silent for
//     ping_timeout more, it is dropped and the other side gets a close
//     frame. A side whose pump is blocked writing to the other is not being
//     read, so its silence does not count (the blocked write is
//     send_timeout's). idle_timeout and max_lifetime end with 1001,
//     max_message_size with 1009, both ways; after 1009 the scanner still
//     follows the sender's frames, forwarding none, so its close reply ends
//     its connection at once. A frame length with the top bit set cannot be
//     followed: 1002 both ways, and the sender's connection closed once its
//     close frame is out. All are runtime timers: an idle tunnel has no
//     goroutine waiting on them, and each follow-up timer (ping timeout,
//     close grace) is armed before the write it follows, which may wait.
//   - Shutdown (tunnels.go): every tunnel in the Server's table sends 1001
//     to both peers (1012 on a Handover), each at its moment in
//     close_spread; a handshake on a connection accepted before the drain
//     still gets its tunnel, closed the same way as it starts. At the
//     deadline every tunnel's connections are closed, and so are those of
//     any that starts later. http.Server.Shutdown cannot see hijacked
//     connections, so tunnels are counted in a WaitGroup. It does
//     see HTTP/2 connections: it sends them GOAWAY (no new streams) and
//     waits while streams are open, which is while their tunnels are. An
//     HTTP/2 connection with a stream open is never idle, so neither
//     IdleTimeout nor a reload closes one that carries a tunnel.
//
// # WebSockets over HTTP/2
//
// RFC 8441 (h2stream.go). A stream's tunnel is the same tunnel: the
// frame scanner, keepalive, idle_timeout, max_message_size, close codes,
// limits and metrics do not know which kind of client connection they
// have. What differs is in h2Stream:
//   - Writes go out as DATA frames, flushed each time; Go's server blocks
//     the write until its frames are out within the stream's and the
//     connection's windows. A client that stops reading stops its own
//     stream's writes (and, through the pump, the reading of its backend)
//     and nobody else's; nothing is buffered beyond the tunnel's one read.
//   - send_timeout: Go's stream write deadline resets a stream when it
//     passes even with no write waiting, which would end every tunnel idle
//     for send_timeout. h2Stream keeps the deadline itself and resets the
//     stream (RST_STREAM) only when a write is waiting at it. A client that
//     takes nothing at all on its connection cannot even be sent that
//     reset: a connection that takes no byte for twice the longest
//     send_timeout is closed (HTTP2Config.WriteByteTimeout), ending its
//     tunnels.
//   - Windows (h2conn.go): Go returns connection-level receive window only
//     as a handler reads, so what a stuck stream holds (its backend not
//     reading) counts against the connection; with Go's defaults (1 MiB per
//     stream and per connection) one stuck WebSocket stops every upload on
//     its connection. Here a stream has h2StreamWindow (256 KiB) and a
//     connection h2ConnWindow (25 MiB, a hundred streams' worth) whatever
//     h2_max_streams is: fewer than a hundred stuck streams take nothing
//     the others need, and one connection can make the proxy hold at most
//     25 MiB, until send_timeout drops the stuck backends. Go's server
//     takes its buffers as DATA comes, not per stream.
//   - The stream limit (h2_max_streams, default 1,000; h2conn.go): a
//     browser puts all of a site's WebSockets and requests on one
//     connection and queues what is over the limit on its side, silently;
//     the proxy logs a connection that reaches it, once, at warn. Go's
//     server resets the streams of a client that goes over it anyway, and
//     malformed requests, before any handler: its CountError hook is where
//     the proxy counts and logs them (without the client's address).
//   - Cost: per message 1.2 (busy) to 3 times an HTTP/1.1 tunnel's CPU,
//     because Go's server passes every DATA frame between goroutines; per
//     handshake about half a new HTTP/1.1 connection's, as a stream needs
//     no TCP or TLS handshake (BenchmarkH2, compare.sh's wssproxy-h2;
//     docs/performance.md#websockets-over-http2). Hence http2_websockets
//     is off by default. A tunnel's per-message work in this
//     package is the same either way.
//
// Go 1.27 advertises extended CONNECT for the whole process or not at all:
// only with GODEBUG=http2xconnect=1 at start (read in net/http's init; a
// //go:debug directive is refused). wssproxy's main therefore re-executes
// itself once with GODEBUG agreeing with http2_websockets
// (internal/xconnect), and this package's tests re-execute the test
// binary (testutil.ExtendedConnect). http2_websockets off with the
// variable set anyway (a program embedding this package) is refused with
// 405, although advertised; without the variable (wssproxy), Go's server
// resets an extended CONNECT itself, which h2Refused logs. When Go 1.28, with
// http.HTTP2Config.EnableConnectProtocol, is the floor:
//  1. in New, set s.http.HTTP2.EnableConnectProtocol from
//     cfg.H2WebSockets() and drop extendedConnect (h2stream.go) and the
//     warnings about it;
//  2. delete internal/xconnect, cmd/wssproxy/xconnect.go and the call in
//     main, and
//     internal/testutil/xconnect.go and its call in the TestMain of this
//     package's tests, with TestHTTP2WebSocketsProcess's GODEBUG checks;
//  3. check whether Go's own HTTP/2 client then sends :protocol (in 1.27
//     net/http refuses the header name), which would let h2helpers_test.go
//     drop its Framer-based client;
//  4. say so in docs/configuration.md's http2_websockets row.
//
// # Backends
//
// Backends are TCP or unix sockets, plain or TLS (backend_ca,
// backend_server_name), optionally sent a PROXY header. A route's pool
// (upstream.go) holds its backends' weights and balancing state, and is
// rebuilt at every reload; the backends themselves live in the Server's
// registry (registry.go), one per address, TLS name, roots and PROXY
// version, shared by every route and configuration that names them. So
// open connection counts (least_conn), passive health (max_fails within
// fail_timeout), active check results and the plain-HTTP keep-alive
// connections survive a reload; a reload drops the backends it no longer
// names and closes their idle connections. Active checks (health.go) run
// on goroutines owned by a configuration, so a reload stops the old ones,
// and the new ones go on from what they found. Health takes backends out
// of rotation; open tunnels are never moved or cut. Plain requests use the
// same pool through poolTransport, and each backend's one http.Transport,
// retrying the next backend on a dial failure when there is no body.
//
// # Admission
//
// One bound keeps the process under its open file limit, in one place
// (connBudget, connlimit.go; fdbudget.go): the descriptor budget, the open
// file limit less 256 kept for listeners, the admin listener's 32
// connections, logs, pollers and health checks. It counts every socket the
// proxy holds for a client or a backend: a client connection from accept
// to close, a backend connection from before its dial until it is closed
// (a WebSocket's when its tunnel ends). A tunnel over HTTP/1.1 costs two,
// a WebSocket on an HTTP/2 stream one on top of its connection's, so no mix
// of connections and streams, and no h2_max_streams, can reach EMFILE. One
// client address may hold max_descriptors_per_ip of it (a quarter by
// default), as the admin listener gives an address a quarter of its own.
//
// At accept: max_client_connections, every client connection on the TLS
// listener and the process's other public listeners, and the descriptor
// budget; the admin listener has its own small bound, a quarter of it per
// client address (connlimit.go). Before any backend is dialed: the
// route's allowed_origins (403), the descriptor budget and the client's
// share of it (503, fdbudget.go; an HTTP/2 stream too: Go's server lets no
// handler send REFUSED_STREAM), the handshake rate per client IP
// (golang.org/x/time/rate, 429), and max_connections and
// max_connections_per_ip (503), counted from the check until the tunnel
// ends (limits.go). A full proxy refuses before the per-address checks,
// and an address is remembered only once admitted, so refusals cost no
// memory. Server.Reload compiles first, and changes nothing if
// that fails; then it gives the limiter the new limits and swaps the routes
// in with one atomic store, in that order (build, server.go), so a
// handshake arriving in between is checked against the new limits and
// served by the old routes. Tunnels keep the route they started with, and
// count towards the open tunnels of the route of the same name after it.
//
// # The hot path
//
// Per read the tunnel does: one read(2) (raw engine; the portable engine
// reads through net.Conn), and none that finds the socket empty at the end
// of a burst (a short read ends it; internal/sockio's raw_linux.go says
// why that loses nothing, and how an end of stream that came with the data
// is still seen at once); a scan of the frame headers in it; one
// uncontended lock of the destination's output; one clock read for the
// write deadline (set only when an eighth of send_timeout has passed);
// usually one Write (more only when a header straddles two reads or a
// control frame is consumed); one time.Since for keepalive; one atomic add
// for the byte metrics. No allocations, no logging, nothing per byte.
// Accounting costs per read three atomic stores (messages, bytes, the time
// of the last data frame; see "Where the counters live"); per data frame
// one interface call (Admit) and one increment.
// BenchmarkTunnel measures its CPU and allocations per forwarded message
// (0 allocs/op); BenchmarkEcho compares it with a direct connection.
//
// # Where the counters live
//
//   - Per tunnel and direction (internal/tunnel's stats.go): the pump that
//     reads a side counts messages begun (hooks.msgs, in hooks.Data: a
//     data frame that is not a continuation) and bytes written on
//     (pumper.n) in plain fields only it touches, and after each read
//     publishes them, with the time of the last data frame, to atomics of
//     that side (side.msgs, side.fwd, side.lastMsg). Tunnel.Stats reads
//     those from any goroutine; the End carries the final figures. How
//     long the rate limits held the client is Tunnel.throttled.
//   - Per route (tunnelapi.go): nothing is counted per message. The
//     Server adds an ended tunnel's End to its route's totals
//     (endedTraffic) in the same hold of tmu that takes it out of the
//     table; RouteTraffic sums those and the open tunnels' Stats.
//     wssproxy_messages_total is read from it at scrape time
//     (messagesCollector), as are the dashboard's charts (internal/admin's
//     History, a ring buffer sampled every 2 s). wssproxy_tunnel_bytes_total
//     is the older per-read counter add (routeMetrics.Forwarded).
//   - The tunnel API (internal/admin's tunnels.go): Server.Tunnels and
//     Tunnel read the table and each tunnel's Stats; CloseTunnel shuts a
//     tunnel from the proxy's side (Reason AdminClose).
//   - Rate limits: a tunnel's limiters are made when it starts
//     (ratelimit.go: rateSpec.limit); message_rate_per_ip's are shared per
//     route and client address, and dropped with that address's last
//     tunnel. Throttles and closes are counted by routeMetrics.Limited.
//
// Why it is built so, with the measurements that decided it (frames
// forwarded in place, fresh goroutines for the tunnel, buffers only while
// data moves): examples/bench/PERFORMANCE.md.
package proxy
