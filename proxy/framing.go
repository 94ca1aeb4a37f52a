package proxy

// The request stream of one HTTP/1.x connection, followed byte by byte as
// net/http reads it, for what net/http does not tell a handler: whether a
// request carried both Content-Length and Transfer-Encoding. net/http
// deletes Content-Length when the body is chunked and serves the request
// on a connection it keeps open; RFC 9112 §6.1 says such a request may be
// an attempt at request smuggling and the connection must be closed
// (nginx answers 400). So the client connection (conn.go) feeds every byte
// net/http reads to a framing, which finds each request's head, notes its
// framing headers, and skips its body by Content-Length or chunk by chunk
// (§7.1), to find the head that follows.
//
// It is strict where net/http is lenient: a bare LF or CR, a folded header
// line, a chunk line net/http would trim, HTTP/1.0 (whose bodies may run to
// the end of the connection) or anything else it does not follow exactly
// makes it lost. Then it vouches for no later request, and the proxy closes
// the connection after its next response (conn.go) rather than guess. Only
// heads are scanned byte by byte; bodies are skipped by length.

const (
	lineKeep   = 96        // bytes of a line kept: more than any name or length needs
	maxChunkLn = 4096      // net/http's limit on a chunk line
	headQueue  = 4         // pipelined heads held for their handlers
	maxLen     = 1<<62 - 1 // larger lengths: lost
)

type framingState uint8

const (
	fsRequestLine framingState = iota
	fsHeader
	fsBody      // Content-Length bytes
	fsChunkLine // chunk size [; extensions]
	fsChunkData
	fsChunkEnd // the CRLF after a chunk's data
	fsTrailer
	fsLost
)

// requestHead is what a framing saw of one request's head.
type requestHead struct {
	method  [16]byte
	methodN uint8
	target  [48]byte // the request target's first bytes
	targetN uint8
	cl      bool   // a Content-Length field
	clValue uint64 // its value
	te      int    // Transfer-Encoding fields
	chunked bool   // exactly one, and it says chunked
	http10  bool
}

// conflict reports a request whose length two fields give (RFC 9112 §6.1).
func (h *requestHead) conflict() bool { return h.cl && h.te > 0 }

// matches reports whether h is the head net/http parsed as method and
// target (Request.Method and Request.RequestURI).
func (h *requestHead) matches(method, target string) bool {
	if string(h.method[:h.methodN]) != method {
		return false
	}
	kept := string(h.target[:h.targetN])
	if len(target) > len(h.target) {
		target = target[:len(h.target)]
	}
	return kept == target
}

type framing struct {
	st        framingState
	line      [lineKeep]byte // the current line's first bytes
	n         int            // the current line's length
	spaces    int            // in the request line
	first     int            // index of its first space
	last      int            // index of its last space
	tail      uint64         // the line's last 8 bytes
	cr        bool           // the last byte was a CR
	skipCRLF  int            // net/http drops up to 4 CR or LF after a POST
	left      uint64         // body or chunk data still to come
	lastPOST  bool
	cur       requestHead
	queue     [headQueue]requestHead
	queued    int
	queueHead int
}

// lost reports whether f has stopped following the stream.
func (f *framing) lost() bool { return f.st == fsLost }

// claim takes the head of the request net/http is handling, named by its
// method and target. Heads before it that no handler claimed (net/http
// answered them itself) are dropped. It reports false when f has no such
// head: f is lost, or did not follow the stream to it.
func (f *framing) claim(method, target string) (requestHead, bool) {
	for f.queued > 0 {
		h := f.queue[f.queueHead]
		f.queueHead = (f.queueHead + 1) % headQueue
		f.queued--
		if h.matches(method, target) {
			return h, true
		}
	}
	return requestHead{}, false
}

// feed follows p, the next bytes of the stream.
func (f *framing) feed(p []byte) {
	for i := 0; i < len(p); i++ {
		switch f.st {
		case fsLost:
			return
		case fsBody, fsChunkData:
			k := min(uint64(len(p)-i), f.left)
			f.left -= k
			i += int(k) - 1
			if f.left == 0 {
				if f.st == fsBody {
					f.endMessage()
				} else {
					f.st = fsChunkEnd
				}
			}
			continue
		}
		b := p[i]
		if f.cr {
			f.cr = false
			if b != '\n' {
				f.st = fsLost // a bare CR
				return
			}
			f.endLine()
			continue
		}
		if f.st == fsRequestLine && f.n == 0 && f.skipCRLF > 0 {
			f.skipCRLF--
			if b == '\r' || b == '\n' {
				continue
			}
			f.skipCRLF = 0
		}
		switch b {
		case '\r':
			f.cr = true
		case '\n':
			f.st = fsLost // a bare LF
			return
		default:
			if f.n < lineKeep {
				f.line[f.n] = b
			}
			if b == ' ' && f.st == fsRequestLine {
				if f.spaces == 0 {
					f.first = f.n
				}
				f.spaces++
				f.last = f.n
			}
			f.tail = f.tail<<8 | uint64(b)
			f.n++
			if f.n > maxChunkLn && f.st != fsRequestLine && f.st != fsHeader {
				f.st = fsLost // net/http refuses such a chunk line
				return
			}
		}
	}
}

// endLine acts on a complete line (its CRLF consumed).
func (f *framing) endLine() {
	n, spaces, tail := f.n, f.spaces, f.tail
	f.n, f.spaces, f.tail = 0, 0, 0
	switch f.st {
	case fsRequestLine:
		f.requestLine(n, spaces, tail)
	case fsHeader:
		if n == 0 {
			f.endHead()
			return
		}
		f.headerField(n)
	case fsChunkLine:
		size, ok := chunkSize(f.line[:min(n, lineKeep)])
		switch {
		case !ok:
			f.st = fsLost
		case size == 0:
			f.st = fsTrailer
		default:
			f.st, f.left = fsChunkData, size
		}
	case fsChunkEnd:
		if n != 0 {
			f.st = fsLost
			return
		}
		f.st = fsChunkLine
	case fsTrailer:
		if n == 0 {
			f.endMessage()
		} else if f.line[0] == ' ' || f.line[0] == '\t' {
			f.st = fsLost
		}
	}
}

// requestLine reads "method SP target SP HTTP/1.x" (RFC 9112 §3).
func (f *framing) requestLine(n, spaces int, tail uint64) {
	const http11, http10 = "HTTP/1.1", "HTTP/1.0"
	var v [8]byte
	for i := range v {
		v[i] = byte(tail >> (56 - 8*i))
	}
	method := f.first
	if n == 0 || spaces != 2 || f.last != n-9 || method == 0 || method > len(f.cur.method) ||
		(string(v[:]) != http11 && string(v[:]) != http10) {
		f.st = fsLost
		return
	}
	f.cur = requestHead{http10: string(v[:]) == http10}
	f.cur.methodN = uint8(copy(f.cur.method[:], f.line[:method]))
	target := f.line[method+1 : min(f.last, lineKeep)]
	f.cur.targetN = uint8(copy(f.cur.target[:], target))
	f.st = fsHeader
}

// headerField notes the fields that frame the body (RFC 9112 §6).
func (f *framing) headerField(n int) {
	line := f.line[:min(n, lineKeep)]
	if line[0] == ' ' || line[0] == '\t' {
		f.st = fsLost // obsolete line folding: the field before goes on
		return
	}
	name, value, ok := cutByte(line, ':')
	if !ok {
		return // net/http refuses it, or it is longer than any field here
	}
	switch {
	case equalFold(name, "content-length"):
		v, ok := decimal(trimOWS(value))
		if !ok || n > lineKeep || (f.cur.cl && v != f.cur.clValue) {
			f.st = fsLost // net/http refuses it; or a value cut off
			return
		}
		f.cur.cl, f.cur.clValue = true, v
	case equalFold(name, "transfer-encoding"):
		f.cur.te++
		f.cur.chunked = f.cur.te == 1 && n <= lineKeep && equalFold(trimOWS(value), "chunked")
	}
}

// endHead queues the head and follows its body.
func (f *framing) endHead() {
	if f.queued == headQueue {
		f.st = fsLost
		return
	}
	f.queue[(f.queueHead+f.queued)%headQueue] = f.cur
	f.queued++
	h := &f.cur
	f.lastPOST = string(h.method[:h.methodN]) == "POST"
	switch {
	case h.http10, h.conflict():
		// HTTP/1.0 ignores Transfer-Encoding and may end its body with
		// the connection; a conflict is refused and the connection closed.
		f.st = fsLost
	case h.te > 0 && h.chunked:
		f.st = fsChunkLine
	case h.te > 0:
		f.st = fsLost // net/http answers 501 and closes
	case h.cl && h.clValue > 0:
		f.st, f.left = fsBody, h.clValue
	default:
		f.endMessage()
	}
}

func (f *framing) endMessage() {
	f.st = fsRequestLine
	if f.lastPOST {
		f.skipCRLF = 4
	}
}

// chunkSize reads "HEX [; extensions]" as net/http does, but without the
// whitespace it trims: such a line makes the framing lost.
func chunkSize(line []byte) (uint64, bool) {
	hex, _, _ := cutByte(line, ';')
	if len(hex) == 0 || len(hex) > 15 {
		return 0, false
	}
	var n uint64
	for _, c := range hex {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}

func decimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= maxLen
}

func cutByte(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with lower, which is lower case ASCII.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
