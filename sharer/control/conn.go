package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Message is one received message. FD is -1 unless the message carried a
// descriptor; the receiver owns it and must close it on every path.
type Message struct {
	Type    Type
	Header  []byte
	Payload []byte
	FD      int
}

// Unmarshal decodes the JSON header into v.
func (m *Message) Unmarshal(v any) error {
	if err := json.Unmarshal(m.Header, v); err != nil {
		return fmt.Errorf("control: bad %s header: %w", m.Type, err)
	}
	return nil
}

// CloseFD closes the message's descriptor, if any.
func (m *Message) CloseFD() {
	if m.FD >= 0 {
		unix.Close(m.FD)
		m.FD = -1
	}
}

// Conn is one end of a control connection. Send is safe for concurrent use;
// Recv must be called from one goroutine at a time.
type Conn struct {
	uc      *net.UnixConn
	raw     syscall.RawConn
	sendMu  sync.Mutex
	sendBuf []byte
	buf     []byte
	oob     []byte
}

// NewConn wraps a connected SOCK_SEQPACKET Unix socket.
func NewConn(uc *net.UnixConn) (*Conn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &Conn{uc: uc, raw: raw, buf: make([]byte, MaxMessage+1), oob: make([]byte, unix.CmsgSpace(4*4))}, nil
}

// ErrWouldBlock is returned by Send with a negative timeout when the
// peer's receive queue is full: it has stopped reading for now.
var ErrWouldBlock = errors.New("control: the peer's socket buffer is full")

// ErrNoDaemon is wrapped by the dial error when nothing answers at the
// control socket.
var ErrNoDaemon = errors.New("no port-sharing daemon")

// Dial connects to a control socket at path within timeout.
func Dial(path string, timeout time.Duration) (*Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return DialContext(ctx, path)
}

// DialContext connects to a control socket at path. Its errors say what to
// do: one wrapping ErrNoDaemon when nothing listens there, another when
// the socket's permissions keep the caller out.
func DialContext(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	switch {
	case errors.Is(err, unix.EACCES):
		owner := ""
		if fi, serr := os.Stat(path); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = fmt.Sprintf(" owned by uid %d, gid %d, mode %04o", st.Uid, st.Gid, fi.Mode().Perm())
			}
		}
		return nil, fmt.Errorf("cannot reach the port-sharing daemon at %s: permission denied (the socket is%s: run as its owner or a member of its group)", path, owner)
	case err != nil:
		return nil, fmt.Errorf("%w at %s: %v (is 'portshare serve' running?)", ErrNoDaemon, path, err)
	}
	cc, err := NewConn(c.(*net.UnixConn))
	if err != nil {
		c.Close()
		return nil, err
	}
	return cc, nil
}

// UnixConn returns the underlying socket.
func (c *Conn) UnixConn() *net.UnixConn { return c.uc }

// Close closes the connection; a blocked Recv returns an error.
func (c *Conn) Close() error { return c.uc.Close() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.uc.SetDeadline(t) }

// SetReadDeadline sets the deadline of Recv: past it, Recv fails with
// os.ErrDeadlineExceeded and the message stays queued.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Send sends one message, with fd as SCM_RIGHTS when fd ≥ 0. Send does not
// take ownership of fd. A send that cannot complete by timeout (the peer
// stopped reading) fails rather than blocking the caller; with a negative
// timeout it does not wait at all and fails with ErrWouldBlock.
func (c *Conn) Send(t Type, header any, payload []byte, fd int, timeout time.Duration) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	msg, err := Encode(c.sendBuf[:0], t, header, payload)
	if err != nil {
		return err
	}
	c.sendBuf = msg[:0]
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// Try once without waiting: a deadline costs a runtime timer (and often
	// a wake-up of the network poller), and a SEQPACKET send only has to
	// wait when the peer stopped reading.
	var serr error
	send := func(wait bool) func(uintptr) bool {
		return func(sock uintptr) bool {
			serr = unix.Sendmsg(int(sock), msg, oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			return !wait || serr != unix.EAGAIN
		}
	}
	if err := c.raw.Write(send(false)); err != nil {
		return err
	}
	if serr == unix.EAGAIN {
		if timeout < 0 {
			return ErrWouldBlock
		}
		if timeout > 0 {
			c.uc.SetWriteDeadline(time.Now().Add(timeout))
			defer c.uc.SetWriteDeadline(time.Time{})
		}
		if err := c.raw.Write(send(true)); err != nil {
			return err
		}
	}
	if serr != nil {
		return os.NewSyscallError("sendmsg", serr)
	}
	return nil
}

// ErrRightsTruncated is returned by Recv when the kernel could not deliver
// a message's descriptors (MSG_CTRUNC: usually the receiver is out of file
// descriptors). The message itself is returned with it, FD -1, so the
// receiver can say which hand-off it lost.
var ErrRightsTruncated = errors.New("control: ancillary data truncated (MSG_CTRUNC): descriptors lost")

// Recv receives one message. Descriptors arrive close-on-exec
// (MSG_CMSG_CLOEXEC); a truncated message or truncated ancillary data
// (MSG_TRUNC, MSG_CTRUNC) is an error, and any descriptor that came with a
// bad message is closed before Recv returns. Recv returns io.EOF when the
// peer closed. The message's slices are valid until the next Recv.
func (c *Conn) Recv() (Message, error) {
	var n, oobn, flags int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), c.buf, c.oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return Message{FD: -1}, err
	}
	fds, ferr := parseRights(c.oob[:oobn])
	m := Message{FD: -1}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	fail := func(e error) (Message, error) {
		closeAll()
		return Message{FD: -1}, e
	}
	switch {
	case ferr != nil:
		return fail(ferr)
	case flags&unix.MSG_TRUNC != 0 || n > MaxMessage:
		return fail(fmt.Errorf("control: message exceeds %d bytes", MaxMessage))
	case flags&unix.MSG_CTRUNC != 0:
		// The message is whole; only its descriptors are lost. Return it
		// so the receiver can answer for it.
		closeAll()
		if m.Type, m.Header, m.Payload, err = Decode(c.buf[:n]); err != nil {
			return Message{FD: -1}, err
		}
		return m, ErrRightsTruncated
	case n == 0 && oobn == 0:
		return fail(io.EOF)
	case len(fds) > 1:
		return fail(fmt.Errorf("control: %d descriptors in one message, want at most 1", len(fds)))
	}
	if len(fds) == 1 {
		m.FD = fds[0]
	}
	m.Type, m.Header, m.Payload, err = Decode(c.buf[:n])
	if err != nil {
		m.CloseFD()
		return Message{FD: -1}, err
	}
	return m, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control: bad ancillary data: %w", err)
	}
	var fds []int
	for _, cm := range cmsgs {
		if cm.Header.Level != unix.SOL_SOCKET || cm.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&cm)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// PeerCred returns the credentials of the process that connected uc, as the
// kernel recorded them at connect time (SO_PEERCRED).
func PeerCred(uc *net.UnixConn) (*unix.Ucred, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// IsClosed reports whether err means the connection is gone.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}
