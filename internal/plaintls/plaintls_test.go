package plaintls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestExplain guards the classification on a real TLS handshake: a
// client that dials a plain HTTP server gets crypto/tls's "first record
// does not look like a TLS handshake", which Explain names as plain HTTP
// with the ws:// URL to write; a server that closes at once, and other
// errors, are left as they are.
func TestExplain(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	handshake := func(addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := (&tls.Dialer{Config: &tls.Config{ServerName: "backend"}}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	addr := strings.TrimPrefix(plain.URL, "http://")
	err = Explain("wss://"+addr+"/app", handshake(addr))
	want := "tls: first record does not look like a TLS handshake: the backend answered plain HTTP: it speaks ws://, not wss:// (write it as ws://" + addr + "/app)"
	if !Is(err) || !HTTP(err) || err.Error() != want {
		t.Errorf("plain HTTP: %v\nwant %s", err, want)
	}
	if err := handshake(closer.Addr().String()); Is(err) || Explain("wss://x:1", err) != err {
		t.Errorf("a server that closes: %v classified as not TLS", err)
	}
	other := fmt.Errorf("dial: %w", errors.New("connection refused"))
	if Explain("wss://x:1", other) != other {
		t.Error("another error changed")
	}
	rh := tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake", RecordHeader: [5]byte{'S', 'S', 'H', '-', '2'}}
	if err := Explain("https://x:1", rh); HTTP(err) || !strings.HasSuffix(err.Error(), "the backend answered something that is not TLS: it speaks http://, not https:// (write it as http://x:1)") {
		t.Errorf("not TLS, not HTTP: %v", err)
	}
}
