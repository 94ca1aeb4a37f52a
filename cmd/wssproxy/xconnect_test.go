package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestHTTP2WebSocketsProcess guards, in a real process, that wssproxy
// makes GODEBUG agree with http2_websockets by re-executing itself at
// start: the PID stays (pid_file), other GODEBUG settings stay; with
// true, the TLS listener's HTTP/2 advertises extended CONNECT and a
// WebSocket runs as a stream, and it survives a SIGHUP that moves the
// listener; with false, and by default, nothing is advertised even when
// the caller's GODEBUG asked for it.
func TestHTTP2WebSocketsProcess(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	backend := testutil.Serve(t, echo.Handler(echo.Options{}))
	for _, tc := range []struct {
		name    string
		key     string // the config line
		godebug string // the caller's
		want    string // the process's, after the re-exec
	}{
		{"default", "", "http2xconnect=1,madvdontneed=1", "madvdontneed=1"},
		{"off", "http2_websockets = false", "http2xconnect=1,madvdontneed=1", "madvdontneed=1"},
		{"on", "http2_websockets = true", "madvdontneed=1", "madvdontneed=1,http2xconnect=1"},
		{"on, already set", "http2_websockets = true", "http2xconnect=1", "http2xconnect=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			dir := t.TempDir()
			cfg, pidFile := filepath.Join(dir, "c.toml"), filepath.Join(dir, "pid")
			conf := fmt.Sprintf("listen = \"127.0.0.1:0\"\npid_file = %q\n%s\n[admin]\nlisten = \"\"\n[[route]]\npath = \"/wss\"\nbackend = \"ws://%s\"\n",
				pidFile, tc.key, backend)
			os.WriteFile(cfg, []byte(conf), 0o600)
			env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
			p := &proc{cmd: exec.Command(bin, "-config", cfg), logs: &testutil.Logs{}}
			p.cmd.Env = append(env, "GODEBUG="+tc.godebug)
			p.cmd.Stderr = p.logs
			p.start(t)
			p.addr = p.logs.Wait(t, ctx, `msg=listening addr=(\S+)`)

			pid := p.cmd.Process.Pid
			var data []byte
			waitFor(t, ctx, "the pid_file", func() bool { // written just after the log line
				data, _ = os.ReadFile(pidFile)
				return len(data) > 0
			})
			if strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
				t.Errorf("pid_file %q, want the PID started, %d", data, pid)
			}
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil {
				t.Fatal(err)
			}
			var godebug []string
			for _, kv := range strings.Split(string(environ), "\x00") {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					godebug = append(godebug, v)
				}
			}
			if len(godebug) != 1 || godebug[0] != tc.want {
				t.Errorf("the process's GODEBUG %q, want %q", godebug, tc.want)
			}

			h := dialH2(t, p.addr)
			on := strings.Contains(tc.want, "http2xconnect=1")
			if got := h.settings[http2.SettingEnableConnectProtocol]; (got == 1) != on {
				t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d, want it %v", got, on)
			}
			if !on {
				// A client that sends an extended CONNECT all the same:
				// Go's HTTP/2 server resets the stream before any handler
				// runs, and the proxy logs the refusal (no client address:
				// Go does not say which connection it was).
				h.connect(1, "/wss")
				if status := h.status(1); status != "reset PROTOCOL_ERROR" {
					t.Errorf("extended CONNECT with http2_websockets = false: %s, want reset PROTOCOL_ERROR", status)
				}
				p.logs.Wait(t, ctx, `msg="request refused" refused=h2-extended-connect-off reason="[^"]*" streams=(1) `)
				return
			}
			h.connect(1, "/wss")
			if status := h.status(1); status != "200" {
				t.Fatalf("extended CONNECT: %s, want 200", status)
			}
			h.echo(1, "tom")
			// A reload that moves the listener leaves the connection and
			// its tunnel alone.
			moved := testutil.ClosedPort(t)
			os.WriteFile(cfg, []byte(strings.Replace(conf, "127.0.0.1:0", moved, 1)), 0o600)
			p.cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, ctx, "the reload to move the listener to "+moved, func() bool {
				return accepts(moved) && !accepts(p.addr)
			})
			h.echo(1, "after reload")
		})
	}
}

// accepts reports whether something accepts TCP connections on addr.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// TestServesH2WebSockets guards which command lines re-execute: only those
// that serve, and what their configuration says.
func TestServesH2WebSockets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	off, on := filepath.Join(dir, "off.toml"), filepath.Join(dir, "on.toml")
	os.WriteFile(off, []byte("http2_websockets = false\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	os.WriteFile(on, []byte("http2_websockets = true\n[[route]]\npath = \"/wss\"\nbackend = \"ws://127.0.0.1:8282\"\n"), 0o600)
	for _, tc := range []struct {
		name     string
		args     []string
		want, ok bool
	}{
		{"the embedded default", nil, false, true},
		{"-demo", []string{"-demo"}, false, true},
		{"a file that turns it off", []string{"-config", off}, false, true},
		{"a file that turns it on", []string{"-config", on}, true, true},
		{"-t checks only, on", []string{"-t", "-config", on}, false, false},
		{"-t checks only", []string{"-t", "-config", off}, false, false},
		{"-print-config", []string{"-print-config"}, false, false},
		{"-s sends a signal", []string{"-s", "reload", "-config", off}, false, false},
		{"probe", []string{"probe", "wss://localhost/wss"}, false, false},
		{"health", []string{"health"}, false, false},
		{"a file that does not load", []string{"-config", filepath.Join(dir, "missing.toml")}, false, false},
		{"bad flags", []string{"-nonsense"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want, ok := servesH2WebSockets(tc.args)
			if want != tc.want || ok != tc.ok {
				t.Errorf("servesH2WebSockets(%q) = %v, %v; want %v, %v", tc.args, want, ok, tc.want, tc.ok)
			}
		})
	}
}

// h2Peer is a hand-driven HTTP/2 client connection: Go 1.27's own client
// cannot send an extended CONNECT.
type h2Peer struct {
	t        *testing.T
	fr       *http2.Framer
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	settings map[http2.SettingID]uint32
}

func dialH2(t *testing.T, addr string) *h2Peer {
	t.Helper()
	return dialH2From(t, addr, "")
}

// dialH2From is dialH2 from the local address from ("": any).
func dialH2From(t *testing.T, addr, from string) *h2Peer {
	t.Helper()
	d := &net.Dialer{}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	tc, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2Peer{t: t, fr: http2.NewFramer(tc, tc), settings: map[http2.SettingID]uint32{}}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	io.WriteString(tc, http2.ClientPreface)
	h.fr.WriteSettings()
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
	h.fr.WriteSettingsAck()
	return h
}

func (h *h2Peer) connect(id uint32, path string) {
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
		{":path", path}, {":authority", "localhost"}, {"sec-websocket-version", "13"}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true})
}

// status reads until stream id's response headers.
func (h *h2Peer) status(id uint32) string {
	for {
		switch f := h.read().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				return f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "reset " + f.ErrCode.String()
			}
		}
	}
}

// echo sends msg as a masked text frame on stream id and waits for the
// echo backend's unmasked copy.
func (h *h2Peer) echo(id uint32, msg string) {
	h.t.Helper()
	mask := [4]byte{1, 2, 3, 4}
	out := []byte{0x81, 0x80 | byte(len(msg))}
	out = append(out, mask[:]...)
	for i := range len(msg) {
		out = append(out, msg[i]^mask[i%4])
	}
	h.fr.WriteData(id, false, out)
	want := append([]byte{0x81, byte(len(msg))}, msg...)
	var got []byte
	for len(got) < len(want) {
		if f, ok := h.read().(*http2.DataFrame); ok && f.StreamID == id {
			got = append(got, f.Data()...)
			h.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			h.fr.WriteWindowUpdate(id, uint32(len(f.Data())))
		}
	}
	if !bytes.Equal(got, want) {
		h.t.Fatalf("echo of %q: got % x", msg, got)
	}
}

func (h *h2Peer) read() http2.Frame {
	h.t.Helper()
	f, err := h.fr.ReadFrame()
	if err != nil {
		h.t.Fatal(err)
	}
	if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
		h.fr.WritePing(true, p.Data)
	}
	return f
}
