package proxy

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// claimed is what a handler learns of one request from a framing.
type claimed struct {
	method, target string
	ok, conflict   bool
}

// feedSplit feeds stream to f in pieces cut by rng (nil: one piece).
func feedSplit(f *framing, stream []byte, rng *rand.Rand) {
	for len(stream) > 0 {
		n := len(stream)
		if rng != nil {
			n = 1 + rng.IntN(len(stream))
		}
		f.feed(stream[:n])
		stream = stream[n:]
	}
}

// TestFramingFollowsRequests guards the framing's reading of a request
// stream: each head found with its Content-Length and Transfer-Encoding,
// bodies skipped by length and chunk by chunk so that a pipelined head
// after them is found, and lost (vouching for nothing after) on what it
// does not follow exactly. Every stream is also fed one byte at a time.
func TestFramingFollowsRequests(t *testing.T) {
	t.Parallel()
	const get = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	chunked := "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name   string
		stream string
		claims []claimed
		lost   bool
	}{
		{"one request", get, []claimed{{"GET", "/b", true, false}}, false},
		{"both lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			[]claimed{{"POST", "/a", true, true}}, true},
		{"both lengths, any case and spacing", "POST /a HTTP/1.1\r\ncontent-LENGTH:3\r\nTRANSFER-encoding:  Chunked \r\n\r\n",
			[]claimed{{"POST", "/a", true, true}}, true},
		{"Content-Length body, then a head", "POST /a HTTP/1.1\r\nContent-Length: 28\r\n\r\n" + get + get,
			[]claimed{{"POST", "/a", true, false}, {"GET", "/b", true, false}}, false},
		{"chunked body, then both lengths", chunked + "5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n" +
			"POST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
			[]claimed{{"POST", "/a", true, false}, {"POST", "/c", true, true}}, true},
		{"chunk data that looks like a head", chunked + "1c\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n" + get,
			[]claimed{{"POST", "/a", true, false}, {"GET", "/b", true, false}}, false},
		{"CRLF after a POST body", "POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n" + get,
			[]claimed{{"POST", "/a", true, false}, {"GET", "/b", true, false}}, false},
		{"a head net/http answered itself", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + get,
			[]claimed{{"GET", "/b", true, false}}, false},
		{"bare LF", "GET /b HTTP/1.1\nHost: x\r\n\r\n", []claimed{{"GET", "/b", false, false}}, true},
		{"folded field", "GET /b HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n", []claimed{{"GET", "/b", false, false}}, true},
		{"HTTP/1.0", "GET /b HTTP/1.0\r\n\r\n" + get, []claimed{{"GET", "/b", true, false}, {"GET", "/b", false, false}}, true},
		{"HTTP/1.0 with both", "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			[]claimed{{"POST", "/a", true, true}}, true},
		{"two Transfer-Encodings", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
			[]claimed{{"POST", "/a", true, false}}, true},
		{"chunk size with a space", chunked + "5 \r\nhello\r\n0\r\n\r\n" + get,
			[]claimed{{"POST", "/a", true, false}, {"GET", "/b", false, false}}, true},
		{"long target", "GET /" + strings.Repeat("t", 200) + " HTTP/1.1\r\n\r\n",
			[]claimed{{"GET", "/" + strings.Repeat("t", 200), true, false}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rng := range []*rand.Rand{nil, rand.New(rand.NewPCG(1, 2))} {
				var f framing
				feedSplit(&f, []byte(tc.stream), rng)
				if rng == nil {
					var bytewise framing
					for i := range len(tc.stream) {
						bytewise.feed([]byte{tc.stream[i]})
					}
					if bytewise != f {
						t.Errorf("fed byte by byte: %+v, at once: %+v", bytewise, f)
					}
				}
				if f.lost() != tc.lost {
					t.Errorf("lost %v, want %v", f.lost(), tc.lost)
				}
				for _, want := range tc.claims {
					h, ok := f.claim(want.method, want.target)
					if ok != want.ok || h.conflict() != want.conflict {
						t.Errorf("claim %s %s: ok %v conflict %v, want %v %v", want.method, want.target, ok, h.conflict(), want.ok, want.conflict)
					}
				}
			}
		})
	}
}

// FuzzFraming guards that the framing never panics, reads a stream the
// same however it arrives, and never vouches for a request that net/http
// frames differently: for every request net/http parses in sequence that
// the framing claims, both agree on chunked or Content-Length and its
// value, so the heads that follow are the same ones.
func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e\r\nhello\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a HTTP/1.0\r\nContent-Length: 2\r\n\r\nxxGET /b HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s), uint64(1))
	}
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		var whole, split framing
		feedSplit(&whole, stream, nil)
		feedSplit(&split, stream, rand.New(rand.NewPCG(seed, seed)))
		if whole != split {
			t.Fatalf("split differently, read differently:\n%+v\n%+v", whole, split)
		}
		br := bufio.NewReader(bytes.NewReader(stream))
		lastPOST := false
		for {
			if lastPOST { // as net/http's server does after a POST
				peek, _ := br.Peek(4)
				n := 0
				for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
					n++
				}
				br.Discard(n)
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			lastPOST = req.Method == "POST"
			h, ok := whole.claim(req.Method, req.RequestURI)
			chunked := len(req.TransferEncoding) > 0
			_, cl := req.Header["Content-Length"]
			if ok && !h.http10 && (h.chunked != chunked || !chunked && (h.cl != cl || cl && int64(h.clValue) != req.ContentLength)) {
				t.Fatalf("%s %s: framing says chunked %v, Content-Length %v %d; net/http: chunked %v, Content-Length %v %d",
					req.Method, req.RequestURI, h.chunked, h.cl, h.clValue, chunked, cl, req.ContentLength)
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
		}
	})
}
