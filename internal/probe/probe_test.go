package probe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/echo"
	"github.com/wssproxy/wssproxy/internal/testutil"
	"github.com/wssproxy/wssproxy/proxy"
)

func writeCA(t *testing.T, c *tls.Certificate) string {
	f := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	return f
}

// serveProxy runs a proxy with TLS cfg routing /wss to backend.
func serveProxy(t *testing.T, cfg *tls.Config, backend string) string {
	srv, err := proxy.New(proxy.Config{Routes: []proxy.Route{{Path: "/wss", Backend: backend}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln := testutil.Listen(t)
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(ln, cfg) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestProbe guards wssproxy probe against each kind of server it must
// diagnose: the documented exit code and the one line saying what to fix.
func TestProbe(t *testing.T) {
	testutil.CheckLeaks(t)
	now := time.Now()
	echoWS := "ws://" + testutil.Serve(t, echo.Handler(echo.Options{}))
	root := testutil.Issue(t, []string{"Test Root"}, true, nil, now.Add(-time.Hour), now.Add(24*time.Hour))
	rootFile := writeCA(t, root)
	good := testutil.Issue(t, []string{"localhost"}, false, root, now.Add(-time.Hour), now.Add(24*time.Hour))
	inter := testutil.Issue(t, []string{"Test Intermediate"}, true, root, now.Add(-time.Hour), now.Add(24*time.Hour))
	behindInter := testutil.Issue(t, []string{"localhost"}, false, inter, now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := testutil.Issue(t, []string{"localhost"}, false, root, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	wrongName := testutil.Issue(t, []string{"other.example"}, false, root, now.Add(-time.Hour), now.Add(24*time.Hour))
	selfSigned, _ := testutil.Cert(t, "localhost")
	serve := func(c *tls.Certificate, min uint16, backend string) string {
		return serveProxy(t, &tls.Config{Certificates: []tls.Certificate{*c}, MinVersion: min, NextProtos: []string{"http/1.1"}}, backend)
	}
	plain := testutil.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	url := func(addr string) string { return "wss://localhost:" + port(addr) + "/wss" }

	for _, tc := range []struct {
		name string
		args []string
		code int
		line string
	}{
		{"good proxy", []string{"-ca", rootFile, "-n", "5", url(serve(good, 0, echoWS))}, probeOK, "OK: the round trip works"},
		{"expired certificate", []string{"-ca", rootFile, url(serve(expired, 0, echoWS))}, probeCertificate, "FAIL: certificate expired on"},
		{"wrong name", []string{"-ca", rootFile, url(serve(wrongName, 0, echoWS))}, probeCertificate, "FAIL: certificate is for other.example, not localhost"},
		{"incomplete chain", []string{"-ca", rootFile, url(serve(behindInter, 0, echoWS))}, probeCertificate, `FAIL: incomplete chain: the server sends only its own certificate, not the intermediate from "Test Intermediate"`},
		{"self-signed", []string{url(serve(selfSigned, 0, echoWS))}, probeCertificate, "FAIL: certificate is self-signed"},
		{"TLS 1.3 only", []string{"-ca", rootFile, url(serve(good, tls.VersionTLS13, echoWS))}, probeTLS12, "FAIL: TLS 1.2 is refused: WeChat mini programs"},
		{"closed port", []string{"wss://localhost:" + port(testutil.ClosedPort(t)) + "/wss"}, probeTCP, "FAIL: port"},
		{"backend down", []string{"-ca", rootFile, url(serve(good, 0, "ws://"+testutil.ClosedPort(t)))}, probeUpgrade, "FAIL: wssproxy answered 502: it cannot reach its backend"},
		{"plain HTTP server", []string{"wss://localhost:" + port(plain) + "/"}, probeTLS, "speaks plain HTTP, not TLS"},
		{"a wss:// backend that speaks ws://", []string{"-ca", rootFile, url(serve(good, 0, "wss"+strings.TrimPrefix(echoWS, "ws")))}, probeUpgrade,
			"FAIL: wssproxy answered 502: its backend is written wss:// but answered plain HTTP, not TLS: write it ws:// in the route"},
		{"no WebSocket there", []string{"ws://localhost:" + port(plain) + "/wss"}, probeUpgrade, "FAIL: the server answered 200 OK, not a WebSocket upgrade"},
		{"insecure goes on", []string{"-insecure", url(serve(selfSigned, 0, echoWS))}, probeOK, "OK: the round trip works, but only past -insecure: certificate is self-signed"},
		{"resolve", []string{"-ca", rootFile, "-resolve", "chat.example.test:127.0.0.1", "wss://chat.example.test:" + port(serve(good, 0, echoWS)) + "/wss"}, probeCertificate, "FAIL: certificate is for localhost, not chat.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), append([]string{"-timeout", "5s"}, tc.args...), &out, &out)
			code := probeOK
			var ee *cli.ExitError
			if errors.As(err, &ee) {
				code = ee.Code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(out.String(), tc.line) {
				t.Errorf("exit %d, want %d; want line %q in:\n%s", code, tc.code, tc.line, out.String())
			}
		})
	}
}

// TestProbeDNS guards the DNS step's failure, with a resolver whose server
// is a closed port on loopback (no query leaves the machine).
func TestProbeDNS(t *testing.T) {
	t.Parallel()
	closed := testutil.ClosedPort(t)
	o, err := parseProbe([]string{"-timeout", "2s", "wss://no-such-host.invalid/wss"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", closed)
	}}
	var out bytes.Buffer
	err = probe(context.Background(), o, &out)
	var ee *cli.ExitError
	if !errors.As(err, &ee) || ee.Code != probeDNS || !strings.Contains(out.String(), "FAIL: no-such-host.invalid does not resolve") {
		t.Errorf("%v:\n%s", err, out.String())
	}
}

// TestProbeJSON guards -json: one object a script can read, with each step.
func TestProbeJSON(t *testing.T) {
	testutil.CheckLeaks(t)
	cert, _ := testutil.Cert(t, "localhost")
	addr := serveProxy(t, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}},
		"ws://"+testutil.Serve(t, echo.Handler(echo.Options{})))
	caFile, _ := testutil.WriteKeyPair(t, cert)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-json", "-ca", caFile, "-message", "hi", "-n", "3",
		"wss://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:] + "/wss"}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	var steps []string
	for _, s := range rep.Steps {
		steps = append(steps, s.Step)
	}
	if !rep.OK || rep.Exit != 0 || rep.Reply != "hi" || rep.RTT == nil || rep.RTT.N != 3 ||
		strings.Join(steps, ",") != "dns,tcp,tls,tls1.2,upgrade,message" {
		t.Errorf("report: %+v", rep)
	}
}

// TestProbeInsecure guards -insecure against a self-signed certificate:
// the tls step is ok with a warning saying what was not verified, no step
// fails, and the last line is OK with the warning; -json carries it too.
func TestProbeInsecure(t *testing.T) {
	testutil.CheckLeaks(t)
	cert, _ := testutil.Cert(t, "localhost")
	addr := serveProxy(t, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}},
		"ws://"+testutil.Serve(t, echo.Handler(echo.Options{})))
	url := "wss://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:] + "/wss"
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-insecure", url}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"\nok   tls ", "warning: certificate is self-signed: browsers and WeChat refuse it", "(not verified: -insecure)",
		"\nOK: the round trip works, but only past -insecure: certificate is self-signed"} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "FAIL") {
		t.Errorf("a step failed:\n%s", text)
	}
	out.Reset()
	if err := Run(context.Background(), []string{"-json", "-insecure", url}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.OK || len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], "certificate is self-signed") {
		t.Errorf("%v: %s", err, out.String())
	}
}

// TestProbeCertWithoutCN guards the chain lines for a leaf with no common
// name (only DNS and IP names, as CAs issue them now): its names stand in
// for the name, instead of an empty one.
func TestProbeCertWithoutCN(t *testing.T) {
	testutil.CheckLeaks(t)
	now := time.Now()
	root := testutil.Issue(t, []string{"Test Root"}, true, nil, now.Add(-time.Hour), now.Add(24*time.Hour))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Leaf, &key.PublicKey, root.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	addr := serveProxy(t, &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"http/1.1"}},
		"ws://"+testutil.Serve(t, echo.Handler(echo.Options{})))
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-ca", writeCA(t, root), "wss://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:] + "/wss"}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if want := "cert[0] localhost 127.0.0.1, issued by Test Root, names localhost 127.0.0.1, expires "; !strings.Contains(out.String(), want) {
		t.Errorf("lacks %q:\n%s", want, out.String())
	}
}

// TestDialProblem guards the tcp step's diagnosis by the error the system
// gave: refused, network unreachable, host unreachable and timeout each
// say so (an unreachable network is not "refused"). Refused and timeout
// are real dials; the unreachable ones cannot be made on loopback, so they
// are the errors the kernel's errno gives a dial, as package net wraps it.
func TestDialProblem(t *testing.T) {
	t.Parallel()
	closed := testutil.ClosedPort(t)
	_, refused := net.Dial("tcp", closed)
	_, timeout := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", closed)
	errno := func(e syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", refused, "port 443 refused on 192.0.2.1: is wssproxy running"},
		{"network unreachable", errno(syscall.ENETUNREACH), "network unreachable: this machine has no route to 192.0.2.1"},
		{"host unreachable", errno(syscall.EHOSTUNREACH), "host unreachable: nothing answers for 192.0.2.1 on its network"},
		{"timeout", timeout, "no answer from 192.0.2.1:443 within 5s: is a firewall dropping packets to port 443?"},
		{"anything else", errno(syscall.EADDRNOTAVAIL), "cannot connect to 192.0.2.1:443: dial tcp: connect: cannot assign requested address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("the dial did not fail")
			}
			if got := dialProblem(tc.err, "192.0.2.1", "443", 5*time.Second); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%v: got %q, want %q…", tc.err, got, tc.want)
			}
		})
	}
}
