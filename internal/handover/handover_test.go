package handover

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestListenInherited guards the new process's side of the hand-over: a
// socket named in Env is served for its role when the configuration still
// gives the same address, once; another address, another role or a
// process not started by an upgrade get fallback's listener.
func TestListenInherited(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "") // Ready tells systemd only when it asks
	errFallback := errors.New("fallback")
	fallback := func() (net.Listener, error) { return nil, errFallback }
	for _, tc := range []struct {
		name, role, addr string
		inherited        bool
	}{
		{"same role and address", "tls", "cfg:443", true},
		{"address changed", "tls", "cfg:8443", false},
		{"other role", "admin", "cfg:443", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			fd, err := syscall.Dup(int(f.Fd())) // Take's file owns its own descriptor
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(Env, fmt.Sprintf("tls=%d@cfg:443", fd))
			in := Take(slog.New(slog.DiscardHandler))
			if _, ok := os.LookupEnv(Env); ok {
				t.Errorf("%s still set after Take", Env)
			}
			got, err := in.Listen(tc.role, tc.addr, fallback)
			if !tc.inherited {
				if err != errFallback {
					t.Errorf("Listen(%q, %q) = %v, %v; want fallback's", tc.role, tc.addr, got, err)
				}
				in.Ready()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Addr().String() != ln.Addr().String() {
				t.Errorf("inherited listener on %s, want %s", got.Addr(), ln.Addr())
			}
			if _, err := in.Listen(tc.role, tc.addr, fallback); err != errFallback {
				t.Errorf("second Listen(%q) = %v; want fallback's: a socket is inherited once", tc.role, err)
			}
			in.Ready()
		})
	}
	t.Run("not an upgrade", func(t *testing.T) {
		var in *Inherited // what Take returns without Env
		if _, err := in.Listen("tls", "cfg:443", fallback); err != errFallback {
			t.Errorf("nil Inherited: Listen = %v; want fallback's", err)
		}
		in.Ready()
	})
}
