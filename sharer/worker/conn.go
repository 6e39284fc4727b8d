package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/control"
)

// Conn is a connection handed off by the daemon. Read returns the bytes the
// daemon already read before reading the socket.
//
// It wraps the received descriptor in an *os.File, which the runtime polls
// like any socket (deadlines work), instead of net.FileConn: that would
// dup the descriptor and repeat a dozen socket calls the daemon's accept
// already made (TCP_NODELAY and keep-alive live on the socket, which the
// worker shares).
type Conn struct {
	f      *os.File
	pre    []byte
	local  net.Addr
	remote net.Addr
	id     uint64
	route  string
	via    string
}

// newConn wraps a received descriptor; it owns fd on every path.
func newConn(fd int, h *control.Handoff, pre []byte) (*Conn, error) {
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != unix.IPPROTO_TCP {
		unix.Close(fd)
		return nil, fmt.Errorf("hand-off %d is not a TCP socket", h.ID)
	}
	c := &Conn{f: os.NewFile(uintptr(fd), "handoff"), pre: bytes.Clone(pre), id: h.ID, route: h.Route, via: h.Via}
	c.local, c.remote = tcpAddr(h.Local, fd, unix.Getsockname), tcpAddr(h.Remote, fd, unix.Getpeername)
	return c, nil
}

// tcpAddr parses the address the daemon sent, asking the socket only if
// that fails.
func tcpAddr(s string, fd int, name func(int) (unix.Sockaddr, error)) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	switch sa, _ := name(fd); sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return &net.TCPAddr{}
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
	n, err := c.f.Read(p)
	return n, c.opError("read", err)
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	return n, c.opError("write", err)
}

// opError gives errors the shape a net.Conn's have: net/http and
// crypto/tls look for net.Error timeouts and *net.OpError, and would take
// an *fs.PathError for a broken connection (cancelling the request context
// after each keep-alive request, or dropping a TLS connection).
func (c *Conn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}
func (c *Conn) Close() error         { return c.f.Close() }
func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// CloseWrite shuts down the sending side (the client reads EOF).
func (c *Conn) CloseWrite() error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return os.NewSyscallError("shutdown", serr)
}

// ID is the daemon's connection id (as in its logs).
func (c *Conn) ID() uint64 { return c.id }

// Route is the registered route that matched.
func (c *Conn) Route() string { return c.route }

// Via is the routing key the client sent: the net.tcp Via, or the HTTP
// request target.
func (c *Conn) Via() string { return c.via }
