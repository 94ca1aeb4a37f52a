package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/wssproxy/wssproxy/internal/urlport"
	"github.com/wssproxy/wssproxy/internal/wsframe"
)

// A lean RFC 6455 client: the load generator must cost little CPU per
// message, since it shares the machine with what it measures, and must
// allocate nothing per message. It writes each frame with one Write, masks
// with a fresh key per frame (§5.3), answers pings, and reassembles
// fragmented messages.

// errClosed is returned by readMessage when the server sent a close frame.
type errClosed struct{ code int }

func (e errClosed) Error() string {
	return fmt.Sprintf("server closed the connection (code %d)", e.code)
}

type conn struct {
	wmu  sync.Mutex // writeFrame: a reader answering a ping may race a writer
	nc   net.Conn
	br   *bufio.Reader
	rng  *mrand.ChaCha8
	wbuf []byte // one frame: header, then masked payload
	rbuf []byte // the message being read
	hdr  [wsframe.MaxHeaderLen]byte
}

// dialer holds what every connection of a run shares.
type dialer struct {
	target *url.URL
	tls    *tls.Config
	net    net.Dialer
	h2     *h2pool // -h2: WebSockets as streams of HTTP/2 connections
}

// dial opens a TCP (and for wss, TLS) connection from local (nil: any) and
// performs the opening handshake, or with -h2 opens a stream. ctx bounds
// all of it.
func (d *dialer) dial(ctx context.Context, local net.Addr) (*conn, error) {
	if d.h2 != nil {
		st, err := d.h2.stream(ctx, local)
		if err != nil {
			return nil, err
		}
		return newConn(st), nil
	}
	nd := d.net
	nd.LocalAddr = local
	nc, err := nd.DialContext(ctx, "tcp", urlport.HostPort(d.target))
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		nc.SetDeadline(deadline)
	}
	if d.target.Scheme == "wss" {
		tc := tls.Client(nc, d.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		nc = tc
	}
	c := newConn(nc)
	if err := c.upgrade(d.target); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096)}
	var seed [32]byte
	rand.Read(seed[:])
	c.rng = mrand.NewChaCha8(seed)
	return c
}

func (c *conn) upgrade(u *url.URL) error {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: wsload\r\n\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: %s (want 101)", resp.Status)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		return errors.New("handshake: wrong Sec-WebSocket-Accept")
	}
	return nil
}

// writeFrame sends one final frame with a masked copy of payload.
func (c *conn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	need := wsframe.MaxHeaderLen + len(payload)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, need)
	}
	h := wsframe.Header{Fin: true, Opcode: op, Masked: true, Length: uint64(len(payload))}
	binary.LittleEndian.PutUint32(h.Mask[:], uint32(c.rng.Uint64()))
	b := wsframe.AppendHeader(c.wbuf[:0], h)
	i := len(b)
	b = b[:i+len(payload)]
	wsframe.MaskCopy(b[i:], payload, h.Mask)
	_, err := c.nc.Write(b)
	return err
}

// readMessage returns the next data message. The payload is valid until the
// next call. Pings are answered, pongs skipped; a close frame is answered
// and returned as errClosed.
func (c *conn) readMessage() (op byte, payload []byte, err error) {
	c.rbuf = c.rbuf[:0]
	op = 0
	for {
		if _, err := io.ReadFull(c.br, c.hdr[:2]); err != nil {
			return 0, nil, err
		}
		if c.hdr[1]&0x80 != 0 {
			return 0, nil, errors.New("server sent a masked frame")
		}
		hl := wsframe.HeaderLen(c.hdr[:2])
		if _, err := io.ReadFull(c.br, c.hdr[2:hl]); err != nil {
			return 0, nil, err
		}
		h, _ := wsframe.ParseHeader(c.hdr[:hl])
		fin, fop, n := h.Fin, h.Opcode, h.Length
		if n > 1<<30 {
			return 0, nil, fmt.Errorf("frame of %d bytes", n)
		}
		start := len(c.rbuf)
		if cap(c.rbuf)-start < int(n) {
			grown := make([]byte, start, start+int(n))
			copy(grown, c.rbuf)
			c.rbuf = grown
		}
		c.rbuf = c.rbuf[:start+int(n)]
		if _, err := io.ReadFull(c.br, c.rbuf[start:]); err != nil {
			return 0, nil, err
		}
		switch fop {
		case wsframe.OpPing, wsframe.OpPong, wsframe.OpClose:
			ctl := c.rbuf[start:]
			c.rbuf = c.rbuf[:start]
			switch fop {
			case wsframe.OpPing:
				if err := c.writeFrame(wsframe.OpPong, ctl); err != nil {
					return 0, nil, err
				}
			case wsframe.OpClose:
				code := 1005
				if len(ctl) >= 2 {
					code = int(binary.BigEndian.Uint16(ctl))
				}
				c.writeFrame(wsframe.OpClose, ctl[:min(len(ctl), 2)])
				return 0, nil, errClosed{code}
			}
			continue
		case wsframe.OpContinuation:
		default:
			op = fop
		}
		if fin {
			return op, c.rbuf, nil
		}
	}
}

// close sends a close frame (1000), waits briefly for the server's, and
// closes the connection.
func (c *conn) close() {
	c.nc.SetDeadline(time.Now().Add(2 * time.Second))
	if c.writeFrame(wsframe.OpClose, []byte{0x03, 0xE8}) == nil {
		for {
			if _, _, err := c.readMessage(); err != nil {
				break
			}
		}
	}
	c.nc.Close()
}
