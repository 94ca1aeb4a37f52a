package probe

// The upgrade and message steps: the WebSocket handshake, round trips, and
// what a refusal means.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// checkWebSocket sends the opening handshake and then the messages.
func (p *prober) checkWebSocket(ctx context.Context, tlsCfg *tls.Config) int {
	tr := &http.Transport{
		TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: p.o.timeout}).DialContext(ctx, network, p.addr)
		},
	}
	defer tr.CloseIdleConnections()
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: p.o.headers}
	if p.o.subprotocol != "" {
		opts.Subprotocols = []string{p.o.subprotocol}
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, p.o.timeout)
	defer cancel()
	c, resp, err := websocket.Dial(dctx, p.o.url.String(), opts)
	if err != nil {
		if resp == nil {
			p.step("upgrade", start, false, nil)
			return p.fail(probeUpgrade, fmt.Sprintf("the WebSocket handshake failed: %v", err))
		}
		p.step("upgrade", start, false, map[string]string{"status": resp.Status}, headerLines(resp.Header)...)
		return p.fail(probeUpgrade, upgradeProblem(resp, p.o.url.Path))
	}
	defer c.CloseNow()
	detail := map[string]string{"status": resp.Status}
	if sp := c.Subprotocol(); sp != "" {
		detail["subprotocol"] = sp
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		detail["extensions"] = ext
	}
	p.step("upgrade", start, true, detail)

	var rtts []float64
	for i := range p.o.count {
		start = time.Now()
		mctx, cancel := context.WithTimeout(ctx, p.o.timeout)
		err := c.Write(mctx, websocket.MessageText, []byte(p.o.message))
		var reply []byte
		if err == nil {
			_, reply, err = c.Read(mctx)
		}
		cancel()
		if err != nil {
			p.step("message", start, false, map[string]string{"sent": p.o.message})
			if code := websocket.CloseStatus(err); code != -1 {
				return p.fail(probeMessage, fmt.Sprintf("the server closed the connection with %d %s instead of answering", code, code))
			}
			return p.fail(probeMessage, fmt.Sprintf("no reply to %q: %v (does the backend answer this message?)", p.o.message, err))
		}
		rtts = append(rtts, msSince(start))
		if i == 0 {
			p.rep.Reply = string(reply)
			p.step("message", start, true, map[string]string{"sent": p.o.message, "reply": string(reply)})
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	if len(rtts) > 1 {
		slices.Sort(rtts)
		pct := func(q float64) float64 { return rtts[min(len(rtts)-1, int(q*float64(len(rtts))))] }
		p.rep.RTT = &rttStats{N: len(rtts), P50: pct(0.5), P90: pct(0.9), P99: pct(0.99), Max: rtts[len(rtts)-1]}
		if !p.o.json {
			fmt.Fprintf(p.out, "     rtt       n=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms\n", len(rtts), p.rep.RTT.P50, p.rep.RTT.P90, p.rep.RTT.P99, p.rep.RTT.Max)
		}
	}
	if p.rep.Problem != "" { // the round trip works, but not for every client
		return probeTLS12
	}
	return probeOK
}

func headerLines(h http.Header) []string {
	var out []string
	for _, k := range []string{"Server", "X-Wssproxy-Error", "Content-Type", "Sec-Websocket-Version"} {
		if v := h.Get(k); v != "" {
			out = append(out, k+": "+v)
		}
	}
	return out
}

// upgradeProblem explains a refused handshake; wssproxy marks its own
// errors with X-Wssproxy-Error, which tells them from the backend's.
func upgradeProblem(resp *http.Response, path string) string {
	switch kind := resp.Header.Get("X-Wssproxy-Error"); kind {
	case "backend-dial":
		return fmt.Sprintf("wssproxy answered %d: it cannot reach its backend; is the ws server behind it running (and on the address in its route)?", resp.StatusCode)
	case "backend-not-tls":
		return fmt.Sprintf("wssproxy answered %d: its backend is written wss:// but answered plain HTTP, not TLS: write it ws:// in the route (the proxy's log line names it)", resp.StatusCode)
	case "backend-timeout":
		return fmt.Sprintf("wssproxy answered %d: its backend accepted the connection but did not answer the handshake; is it a WebSocket server?", resp.StatusCode)
	case "no-route":
		return fmt.Sprintf("wssproxy has no route for %s (404): check the path against its [[route]] paths", path)
	case "origin":
		return "wssproxy refused the Origin (403): add it to the route's allowed_origins, or send the page's Origin with -header"
	case "":
	default:
		return fmt.Sprintf("wssproxy refused the handshake: %d %s", resp.StatusCode, kind)
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("the server answered %s, not a WebSocket upgrade: a web server without a WebSocket route for %s (nginx: location %s with proxy_set_header Upgrade)?", resp.Status, path, path)
	case resp.StatusCode >= 500:
		return fmt.Sprintf("the server answered %s: the backend behind it is failing or not running", resp.Status)
	}
	return fmt.Sprintf("the server refused the WebSocket handshake with %s (the backend's answer: authentication, Origin, path?)", resp.Status)
}
