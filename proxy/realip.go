package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/pires/go-proxyproto"
)

// The client's address. The TCP peer is the client unless it is a trusted
// proxy (trusted_proxies): then real_ip_header is believed, and for
// X-Forwarded-For the list is walked from the right past trusted hops, as
// nginx's real_ip_recursive does, so a client cannot spoof its way in by
// writing the leftmost entry. A PROXY protocol header (from
// proxy_protocol_from only) replaces the TCP peer before any of this.

// prefixes is a parsed list of CIDRs (or single addresses).
type prefixes []netip.Prefix

func parsePrefixes(list []string) (prefixes, error) {
	var out prefixes
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR range (like \"10.0.0.0/8\")", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (ps prefixes) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientInfo is what the proxy believes about a request's client.
type clientInfo struct {
	ip  string // for X-Real-IP, logs, limits
	xff string // X-Forwarded-For to send

	// realIPHeader is real_ip_header (canonical) when it is not one of the
	// forwarding headers the proxy always writes: it is removed from the
	// backend's request and, when the peer is trusted, set to ip.
	realIPHeader string
	trusted      bool // the TCP peer is in trusted_proxies
}

type clientKey struct{}

// withClient works out r's client once and keeps it in r's context.
func (st *state) withClient(r *http.Request) *http.Request {
	info := st.client(r)
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, info))
}

func (st *state) client(r *http.Request) *clientInfo {
	peer := peerAddr(r.RemoteAddr)
	info := &clientInfo{ip: peer.String(), xff: peer.String()}
	header := st.cfg.realIPHeader()
	if canonical := http.CanonicalHeaderKey(header); !isForwarding(canonical) {
		info.realIPHeader = canonical
	}
	if !peer.IsValid() {
		info.ip, info.xff = r.RemoteAddr, r.RemoteAddr
		return info
	}
	if !st.trusted.contains(peer) {
		return info // incoming forwarding headers are ignored (and dropped)
	}
	info.trusted = true
	values := r.Header.Values(header)
	if len(values) == 0 {
		return info
	}
	if http.CanonicalHeaderKey(header) == "X-Forwarded-For" {
		incoming := strings.Join(values, ", ")
		info.xff = incoming + ", " + info.xff // append, as nginx's $proxy_add_x_forwarded_for
		if a, ok := st.walk(incoming); ok {
			info.ip = a.String()
		}
		return info
	}
	if len(values) == 1 {
		if a, ok := parseHostAddr(values[0]); ok {
			info.ip = a.String()
		}
	}
	return info
}

// walk returns the rightmost address in an X-Forwarded-For list that is
// not a trusted proxy. All trusted: the leftmost. A malformed entry ends
// the walk at the last good hop: nothing left of it can be believed.
func (st *state) walk(list string) (netip.Addr, bool) {
	parts := strings.Split(list, ",")
	var last netip.Addr
	for i := len(parts) - 1; i >= 0; i-- {
		a, ok := parseHostAddr(parts[i])
		if !ok {
			return last, last.IsValid()
		}
		if !st.trusted.contains(a) {
			return a, true
		}
		last = a
	}
	return last, last.IsValid()
}

// parseHostAddr reads an address as proxies write it: "192.0.2.1",
// "2001:db8::1", "[2001:db8::1]", or any of those with a port.
func parseHostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientOf is r's client as withClient worked it out.
func clientOf(r *http.Request) *clientInfo {
	if info, ok := r.Context().Value(clientKey{}).(*clientInfo); ok {
		return info
	}
	ip := peerAddr(r.RemoteAddr)
	if !ip.IsValid() {
		return &clientInfo{ip: r.RemoteAddr, xff: r.RemoteAddr}
	}
	return &clientInfo{ip: ip.String(), xff: ip.String()}
}

// clientIP is the address of r's client.
func clientIP(r *http.Request) string { return clientOf(r).ip }

// forwardedHeader is the RFC 7239 Forwarded value for r.
func forwardedHeader(r *http.Request, ip string) string {
	node := ip
	if strings.Contains(ip, ":") {
		node = `"[` + ip + `]"` // §6: IPv6 in brackets, quoted
	}
	v := "for=" + node + ";proto=https"
	if r.TLS == nil {
		v = "for=" + node + ";proto=http"
	}
	if r.Host != "" {
		v += `;host="` + strings.ReplaceAll(r.Host, `"`, "") + `"`
	}
	return v
}

// proxyListener reads PROXY protocol headers (v1 and v2) from the peers
// in proxy_protocol_from, which must send one; a header from anyone else
// is refused. With proxy_protocol off, nothing is parsed. The policy is
// read per connection, so a reload applies to new connections.
func (s *Server) proxyListener(ln net.Listener) net.Listener {
	return &proxyproto.Listener{
		Listener: ln,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			st := s.state.Load()
			if !st.cfg.ProxyProtocol {
				return proxyproto.SKIP, nil
			}
			if st.proxyFrom.contains(peerAddr(o.Upstream.String())) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.REJECT, nil
		},
		ReadHeaderTimeout: s.state.Load().cfg.ReadHeaderTimeout,
	}
}

// writeProxyHeader sends a PROXY protocol header for the client to a
// backend connection (send_proxy_protocol).
func writeProxyHeader(conn net.Conn, version byte, clientIP string) error {
	var src net.Addr // unparseable: a LOCAL header, which claims nothing
	if ip := net.ParseIP(clientIP); ip != nil {
		src = &net.TCPAddr{IP: ip}
	}
	_, err := proxyproto.HeaderProxyFromAddrs(version, src, conn.RemoteAddr()).WriteTo(conn)
	return err
}
