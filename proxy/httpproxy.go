package proxy

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path"
	"sync"
)

// reverseProxy is the plain-HTTP side of a backend route: requests that are
// not WebSocket handshakes (long-polling fallbacks such as socket.io's and
// SockJS's, health URLs, a whole site). Responses are flushed as they come,
// so streaming works. The forwarding headers are the tunnel's.
// With hsts, a backend's Strict-Transport-Security gives way to the proxy's.
func (s *Server) reverseProxy(rt *route, hsts bool) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Hop-by-hop and X-Forwarded-* headers are already gone. Only
			// WebSocket upgrades are tunnelled; other Upgrade requests
			// (h2c…) go on as plain requests.
			pr.Out.Header.Del("Upgrade")
			pr.Out.Header.Del("Connection")
			pr.Out.URL.Path = rt.targetPath(pr.In.URL.Path)
			pr.Out.URL.RawPath = ""
			if !rt.stripPath {
				pr.Out.URL.RawPath = pr.In.URL.RawPath
			}
			pr.Out.Host = pr.In.Host
			rt.forwardHeaders(pr.Out.Header, pr.In)
			if h := pr.Out.Header.Get("Host"); h != "" {
				pr.Out.Host = h
				pr.Out.Header.Del("Host")
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if hsts {
				resp.Header.Del(stsHeader) // the proxy's own (setHSTS) stands
			}
			return nil
		},
		Transport:     &poolTransport{s: s, rt: rt},
		FlushInterval: -1,
		ErrorLog:      s.errorLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				s.log.Debug("client gone during request", "route", rt.name, "client_ip", clientIP(r), "error", err)
				return
			}
			if b, ok := r.Body.(*clientBody); ok && b.failed() != nil {
				// A bad chunk size, a body cut short: the client's fault.
				if r.ProtoMajor == 1 {
					w.Header().Set("Connection", "close") // its framing is broken
				}
				s.refuse(w, r, rt, http.StatusBadRequest, "bad-body", "malformed request body", b.failed())
				return
			}
			if status, kind, public, ok := fdRefusal(err); ok { // the proxy's, not the backend's
				s.refuse(w, r, rt, status, kind, public, err)
				return
			}
			status, kind, public := http.StatusBadGateway, "backend-http", "backend unavailable"
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				status, kind, public = http.StatusGatewayTimeout, "backend-timeout", "backend did not answer in time"
			}
			s.refuse(w, r, rt, status, kind, public, err)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &clientBody{ReadCloser: r.Body}
		}
		rp.ServeHTTP(w, r)
	})
}

// clientBody remembers why reading a client's request body failed, so
// that the error is told from a backend's.
type clientBody struct {
	io.ReadCloser
	mu  sync.Mutex // the Transport reads on its own goroutine
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// poolTransport sends a plain request to the route's backends in the
// pool's order, moving on when a dial fails (nothing was sent). Requests
// with a body are tried once: it cannot be read twice.
type poolTransport struct {
	s  *Server
	rt *route
}

func (p *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	order := p.rt.pool.order(clientIPFrom(req.Context()))
	if req.Body != nil && req.Body != http.NoBody {
		order = order[:1]
	}
	var err error
	for _, u := range order {
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = "http", u.transport
		if u.tls != nil {
			out.URL.Scheme = "https"
		}
		u.conns.Add(1)
		var resp *http.Response
		resp, err = u.plainHTTP.RoundTrip(out)
		u.conns.Add(-1)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "dial" || req.Context().Err() != nil || isOutOfFDs(err) {
			if err == nil {
				p.rt.pool.succeeded(u)
			}
			return resp, err
		}
		p.s.dialFailed(p.rt.pool, u)
	}
	return nil, err
}

// clientIPFrom is the client of the request whose context ctx is.
func clientIPFrom(ctx context.Context) string {
	if info, ok := ctx.Value(clientKey{}).(*clientInfo); ok {
		return info.ip
	}
	return ""
}

// staticHandler serves files under dir for a static route, without
// directory listings. The file path is the request path, or with strip_prefix
// the part after the route's path.
func staticHandler(rt *route, dir string) http.Handler {
	files := http.FileServer(http.FS(noListing{os.DirFS(dir)}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = rt.targetPath(r.URL.Path), ""
		files.ServeHTTP(w, r2)
	})
}

// noListing hides directories that have no index.html, so a static route
// never lists a directory (nginx's autoindex is off by default too).
type noListing struct{ fs.FS }

func (n noListing) Open(name string) (fs.File, error) {
	f, err := n.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		idx, err := n.FS.Open(path.Join(name, "index.html"))
		if err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
		idx.Close()
	}
	return f, nil
}
