package proxy

import (
	"encoding/base64"
	"net/http"
)

// isWebSocket reports whether r asks to upgrade to WebSocket. Such a request
// is then checked strictly by checkHandshake; any other request on a route is
// proxied as plain HTTP.
func isWebSocket(r *http.Request) bool {
	return hasToken(r.Header, "Upgrade", "websocket")
}

// handshakeError is why an opening handshake is refused, with the status the
// client gets.
type handshakeError struct {
	status int
	reason string
}

func (e *handshakeError) Error() string { return e.reason }

// checkHandshake validates a client's opening handshake (RFC 6455 §4.2.1)
// before anything is sent to a backend.
func checkHandshake(r *http.Request) *handshakeError {
	bad := func(reason string) *handshakeError {
		return &handshakeError{status: http.StatusBadRequest, reason: reason}
	}
	switch {
	case r.Method != http.MethodGet:
		return bad("WebSocket handshake must be GET, got " + r.Method)
	case !r.ProtoAtLeast(1, 1) || r.ProtoMajor != 1:
		return bad("WebSocket handshake must be HTTP/1.1, got " + r.Proto)
	case !hasToken(r.Header, "Connection", "upgrade"):
		return bad("WebSocket handshake needs Connection: Upgrade")
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
		return bad("WebSocket handshake must not have a body")
	}
	keys := r.Header["Sec-Websocket-Key"]
	if len(keys) != 1 {
		return bad("WebSocket handshake needs exactly one Sec-WebSocket-Key")
	}
	if k, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(k) != 16 {
		return bad("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	if v := r.Header["Sec-Websocket-Version"]; len(v) != 1 || v[0] != "13" {
		// RFC 6455 §4.4: answer with the versions we support.
		return &handshakeError{status: http.StatusUpgradeRequired, reason: "Sec-WebSocket-Version must be 13"}
	}
	return nil
}
