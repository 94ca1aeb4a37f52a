package sockio

import (
	"net"
	"testing"
	"time"
)

// BenchmarkEndAfterData measures how long a side takes to see the end of a
// stream that its peer sent right after its last data (the raw engine's
// skipped read must not hide it): from the peer's close to the pump's end,
// per engine. Before the end had an event of its own, a raw side found it
// by a look 250 ms after the skipped read whenever both came in one
// wake-up.
func BenchmarkEndAfterData(b *testing.B) {
	for _, c := range []struct {
		name string
		o    Options
	}{{"raw", Options{}}, {"portable", Options{Portable: true}}} {
		b.Run(c.name, func(b *testing.B) {
			e := New(c.o)
			defer e.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			var total time.Duration
			for b.Loop() {
				peer, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				a, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				side := e.Conn(a)
				ended := make(chan time.Time, 1)
				got := make(chan struct{}, 1)
				go side.Pump(func([]byte) error {
					select {
					case got <- struct{}{}:
					default:
					}
					return nil
				}, func(error, error) { ended <- time.Now() })
				peer.Write([]byte("first"))
				<-got // the pump is running and has read once
				peer.Write([]byte("last words"))
				start := time.Now()
				peer.Close()
				total += (<-ended).Sub(start)
				side.Close()
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-to-end")
		})
	}
}

// BenchmarkSideSetup measures what making and closing a side costs per
// connection (a tunnel has two): the raw engine registers each socket
// with its poller to be told of its end.
func BenchmarkSideSetup(b *testing.B) {
	for _, c := range []struct {
		name string
		o    Options
	}{{"raw", Options{}}, {"portable", Options{Portable: true}}} {
		b.Run(c.name, func(b *testing.B) {
			e := New(c.o)
			defer e.Close()
			a, peer := tcpPair(b)
			defer peer.Close()
			rc := a.(*net.TCPConn)
			f, err := rc.File() // a fresh socket per side would measure accept too: reuse one through dups
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.FileConn(f)
				if err != nil {
					b.Fatal(err)
				}
				e.Conn(c).Close()
			}
		})
	}
}
