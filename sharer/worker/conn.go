package worker

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/portshare/portshare/sharer/control"
)

// Conn is a connection handed off by the daemon. Read returns the bytes the
// daemon already read before reading the socket.
type Conn struct {
	tcp   *net.TCPConn
	pre   []byte
	id    uint64
	route string
	via   string
}

// newConn wraps a received descriptor; it owns fd on every path.
func newConn(fd int, h *control.Handoff, pre []byte) (*Conn, error) {
	f := os.NewFile(uintptr(fd), "handoff")
	nc, err := net.FileConn(f) // dups the descriptor into the runtime poller
	f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("hand-off %d is not a TCP socket", h.ID)
	}
	return &Conn{tcp: tc, pre: bytes.Clone(pre), id: h.ID, route: h.Route, via: h.Via}, nil
}

// Read reads the replayed bytes first, then the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.tcp.Read(p)
}

func (c *Conn) Write(p []byte) (int, error)        { return c.tcp.Write(p) }
func (c *Conn) Close() error                       { return c.tcp.Close() }
func (c *Conn) CloseWrite() error                  { return c.tcp.CloseWrite() }
func (c *Conn) LocalAddr() net.Addr                { return c.tcp.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.tcp.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tcp.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tcp.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tcp.SetWriteDeadline(t) }

// ID is the daemon's connection id (as in its logs).
func (c *Conn) ID() uint64 { return c.id }

// Route is the registered route that matched.
func (c *Conn) Route() string { return c.route }

// Via is the routing key the client sent: the net.tcp Via, or the HTTP
// request target.
func (c *Conn) Via() string { return c.via }
