package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

// rawTLS opens a TLS connection to the proxy for requests written byte
// by byte.
func rawTLS(t *testing.T, ctx context.Context, e *env) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	cfg := e.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*tls.Conn), bufio.NewReader(c)
}

// readResponse reads one response and its body.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closedAfter reports whether the proxy closed the connection after what
// was read: the next read ends the stream.
func closedAfter(br *bufio.Reader) bool {
	_, err := br.ReadByte()
	return err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// pathCounter is a plain-HTTP backend that echoes the request body and
// counts the requests per path.
type pathCounter struct {
	mu   sync.Mutex
	seen map[string]int
}

func (p *pathCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	if p.seen == nil {
		p.seen = map[string]int{}
	}
	p.seen[r.URL.Path]++
	p.mu.Unlock()
	io.WriteString(w, r.URL.Path+" "+string(b))
}

func (p *pathCounter) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[path]
}

// TestContentLengthWithTransferEncoding guards RFC 9112 §6.1 against
// request smuggling: a request with both Content-Length and
// Transfer-Encoding gets 400 and its connection closed, on a plain route
// and a WebSocket route, alone or pipelined after a body of either kind;
// it never reaches a backend, and one log line names it.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	backend := &pathCounter{}
	e := startProxy(t, proxy.Config{Routes: []proxy.Route{
		{Path: "/plain", Backend: "http://" + testutil.Serve(t, backend)},
		{Path: "/wss", Backend: echoBackend(t, echo.Options{})},
	}})
	const both = "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name   string
		before string // requests answered normally first, on the same connection
		req    string
	}{
		{"plain route", "", "POST /plain/smuggled HTTP/1.1\r\nHost: x\r\n" + both},
		{"WebSocket handshake", "", "GET /wss/smuggled HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + both},
		{"after a Content-Length body", "POST /plain/first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
			"POST /plain/smuggled HTTP/1.1\r\nHost: x\r\n" + both},
		{"after a chunked body", "POST /plain/first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n",
			"POST /plain/smuggled HTTP/1.1\r\nHost: x\r\n" + both},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged := len(e.logs.Lines("request refused", "refused=framing"))
			c, br := rawTLS(t, ctx, e)
			io.WriteString(c, tc.before+tc.req) // pipelined
			if tc.before != "" {
				if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != "/plain/first hello" {
					t.Fatalf("first request: %d %q", resp.StatusCode, body)
				}
			}
			resp, body := readResponse(t, br)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Wssproxy-Error") != "framing" {
				t.Errorf("got %d %q (%s), want 400 from the proxy", resp.StatusCode, body, resp.Header.Get("X-Wssproxy-Error"))
			}
			if !resp.Close || !closedAfter(br) {
				t.Error("connection kept open after the refusal")
			}
			if n := backend.count("/plain/smuggled"); n != 0 {
				t.Errorf("the backend got the request %d times", n)
			}
			if n := len(e.logs.Lines("request refused", "refused=framing")) - logged; n != 1 {
				t.Errorf("%d log lines for the refusal, want 1:\n%s", n, e.logs)
			}
		})
	}
}

// TestChunkedKeepAlive guards that following the framing costs a
// well-formed client nothing: chunked and Content-Length requests, one
// after another on one connection, are served and the connection kept.
func TestChunkedKeepAlive(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	backend := &pathCounter{}
	e := startProxy(t, route("/plain", "http://"+testutil.Serve(t, backend)))
	c, br := rawTLS(t, ctx, e)
	for i, req := range []string{
		"POST /plain/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /plain/b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nde",
		"POST /plain/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nf\r\n0\r\n\r\n",
		"GET /plain/d HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		io.WriteString(c, req)
		resp, body := readResponse(t, br)
		want := map[int]string{0: "/plain/a abc", 1: "/plain/b de", 2: "/plain/c f", 3: "/plain/d "}[i]
		if resp.StatusCode != 200 || body != want || resp.Close {
			t.Errorf("request %d: %d %q close=%v, want 200 %q on a kept connection", i+1, resp.StatusCode, body, resp.Close, want)
		}
	}
}

// TestMalformedBodyIsClientError guards that a request body the client
// got wrong (a chunk size that is not hex) is answered 400 and logged as
// the client's fault, not 502 "backend unavailable" at warn.
func TestMalformedBodyIsClientError(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 10*time.Second)
	e := startProxy(t, route("/plain", "http://"+testutil.Serve(t, &pathCounter{})))
	c, br := rawTLS(t, ctx, e)
	io.WriteString(c, "POST /plain/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	resp, body := readResponse(t, br)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Wssproxy-Error") != "bad-body" {
		t.Errorf("got %d %q (%s), want 400 bad-body", resp.StatusCode, body, resp.Header.Get("X-Wssproxy-Error"))
	}
	if !closedAfter(br) {
		t.Error("connection kept open after a broken body")
	}
	lines := e.logs.Lines("request refused", "refused=bad-body")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") {
		t.Errorf("log lines, want one at info:\n%s", e.logs)
	}
}

// TestNetHTTPRefusalsCounted guards that the answers net/http gives by
// itself, before any handler (431, 400 for a bad Host or Content-Length,
// 501, a head not finished in time), are logged once and counted in
// wssproxy_requests_refused_total like the proxy's own refusals, and that
// a connection that never sends a request is not. (read_header_timeout
// counts from the accept: it is long enough for a TLS handshake and a
// request on a loaded machine.)
func TestNetHTTPRefusalsCounted(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	logs := &testutil.Logs{}
	srv, err := proxy.New(proxy.Config{
		ReadHeaderTimeout: time.Second,
		MaxHeaderBytes:    1024,
		Routes:            []proxy.Route{{Path: "/", Backend: "http://" + testutil.Serve(t, &pathCounter{})}},
	}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	e := startProxyServer(t, srv)
	for _, tc := range []struct {
		name, req string
		status    int // 0: nothing is answered
		kind      string
	}{
		{"headers too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n", 431, "header-too-large"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "bad-request"},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400, "bad-request"},
		{"unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not-implemented"},
		{"head not finished", "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", 0, "header-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.Lines("request refused", "refused="+tc.kind))
			counted := counter(t, reg, "wssproxy_requests_refused_total", "kind", tc.kind)
			c, br := rawTLS(t, ctx, e)
			io.WriteString(c, tc.req)
			if tc.status != 0 {
				if resp, _ := readResponse(t, br); resp.StatusCode != tc.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
				}
			}
			if !closedAfter(br) {
				t.Fatal("connection not closed")
			}
			// Logged and counted before net/http writes or closes.
			if n := len(logs.Lines("request refused", "refused="+tc.kind)) - before; n != 1 {
				t.Errorf("%d log lines, want 1:\n%s", n, logs)
			}
			if got := counter(t, reg, "wssproxy_requests_refused_total", "kind", tc.kind) - counted; got != 1 {
				t.Errorf("wssproxy_requests_refused_total{kind=%q} rose by %v, want 1", tc.kind, got)
			}
		})
	}
	t.Run("connection that sends nothing", func(t *testing.T) {
		before := len(logs.Lines("request refused"))
		_, br := rawTLS(t, ctx, e)
		if !closedAfter(br) { // read_header_timeout ends it
			t.Fatal("silent connection not closed")
		}
		if lines := logs.Lines("request refused")[before:]; len(lines) != 0 {
			t.Errorf("a connection without a request was logged as refused: %q", lines)
		}
	})
}
