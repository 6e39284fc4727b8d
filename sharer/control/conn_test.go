package control

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pair returns the two ends of a SOCK_SEQPACKET socketpair as Conns.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	var conns [2]*Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("seqpacket-%d", i))
		nc, err := net.FileConn(f) // dups fd
		f.Close()
		require.NoError(t, err)
		uc, ok := nc.(*net.UnixConn)
		require.True(t, ok, "%T", nc)
		conns[i], err = NewConn(uc)
		require.NoError(t, err)
		t.Cleanup(func() { conns[i].Close() })
	}
	return conns[0], conns[1]
}

// fdCount counts this process's open descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// pipes returns n open descriptors (ends of pipes); the caller closes them.
func pipes(t *testing.T, n int) []int {
	t.Helper()
	var fds []int
	for len(fds) < n {
		var p [2]int
		require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
		fds = append(fds, p[0], p[1])
	}
	closeAll(fds[n:])
	return fds[:n]
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// recv bounds a Recv in time.
func recv(t *testing.T, c *Conn) (Message, error) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	return c.Recv()
}

func TestSendRecvCarriesUsableCloexecFD(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()

	hdr := Handoff{ID: 42, Route: "net.tcp://+:8808/x/", Deadline: 123}
	require.NoError(t, a.Send(TypeHandoff, hdr, []byte("pre-read"), int(w.Fd()), time.Second))
	_, err = w.Write([]byte("x"))
	require.NoError(t, err, "Send does not take ownership of the descriptor")

	m, err := recv(t, b)
	require.NoError(t, err)
	defer m.CloseFD()
	assert.Equal(t, TypeHandoff, m.Type)
	assert.Equal(t, "pre-read", string(m.Payload))
	var got Handoff
	require.NoError(t, m.Unmarshal(&got))
	assert.Equal(t, hdr, got)

	require.GreaterOrEqual(t, m.FD, 0)
	assert.NotEqual(t, int(w.Fd()), m.FD, "a new descriptor")
	flags, err := unix.FcntlInt(uintptr(m.FD), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, flags&unix.FD_CLOEXEC, "received descriptors are close-on-exec")

	// The received descriptor is the pipe's write end.
	_, err = unix.Write(m.FD, []byte("y"))
	require.NoError(t, err)
	buf := make([]byte, 2)
	require.NoError(t, r.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(r, buf)
	require.NoError(t, err)
	assert.Equal(t, "xy", string(buf))

	m.CloseFD()
	assert.Equal(t, -1, m.FD)
	m.CloseFD() // a second close is a no-op
}

func TestMessageWithoutFD(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Send(TypeAck, Ack{ID: 1}, nil, -1, 0))
	m, err := recv(t, b)
	require.NoError(t, err)
	assert.Equal(t, -1, m.FD)
	assert.Equal(t, TypeAck, m.Type)
	assert.Empty(t, m.Payload)
}

// More descriptors than Recv has room for (4): the kernel installs the
// ones that fit and sets MSG_CTRUNC. Recv must fail and close those.
func TestTruncatedDescriptorsAreErrorAndClosed(t *testing.T) {
	a, b := pair(t)
	msg, err := Encode(nil, TypeHandoff, Handoff{ID: 1}, nil)
	require.NoError(t, err)

	before := fdCount(t)
	fds := pipes(t, 8)
	_, _, err = a.UnixConn().WriteMsgUnix(msg, unix.UnixRights(fds...), nil)
	require.NoError(t, err)
	closeAll(fds)

	m, err := recv(t, b)
	require.ErrorIs(t, err, ErrRightsTruncated)
	assert.Contains(t, err.Error(), "MSG_CTRUNC")
	assert.Contains(t, err.Error(), "descriptors")
	assert.Equal(t, before, fdCount(t), "the descriptors that did arrive were closed")
	// The message comes back without a descriptor, so the receiver can
	// say which hand-off it lost.
	assert.Equal(t, -1, m.FD)
	assert.Equal(t, TypeHandoff, m.Type)
	var h Handoff
	require.NoError(t, m.Unmarshal(&h))
	assert.EqualValues(t, 1, h.ID)

	// The connection still works.
	require.NoError(t, a.Send(TypeAck, Ack{ID: 2}, nil, -1, time.Second))
	m, err = recv(t, b)
	require.NoError(t, err)
	assert.Equal(t, TypeAck, m.Type)
}

func TestTwoDescriptorsAreErrorAndBothClosed(t *testing.T) {
	a, b := pair(t)
	msg, err := Encode(nil, TypeHandoff, Handoff{ID: 1}, nil)
	require.NoError(t, err)

	before := fdCount(t)
	fds := pipes(t, 2)
	_, _, err = a.UnixConn().WriteMsgUnix(msg, unix.UnixRights(fds...), nil)
	require.NoError(t, err)
	closeAll(fds)

	m, err := recv(t, b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 descriptors in one message")
	assert.Equal(t, -1, m.FD)
	assert.Equal(t, before, fdCount(t), "both received descriptors were closed")
}

// A descriptor that comes with a message Recv rejects is closed too.
func TestDescriptorWithBadMessageIsClosed(t *testing.T) {
	a, b := pair(t)
	good, err := Encode(nil, TypeHandoff, Handoff{ID: 1}, nil)
	require.NoError(t, err)
	badVersion := append([]byte(nil), good...)
	badVersion[0] = Version + 1

	for _, tc := range []struct {
		name string
		msg  []byte
		fds  int
		want string
	}{
		{"other version", badVersion, 1, "unsupported protocol version"},
		{"short", []byte{Version, byte(TypeAck)}, 1, "short message"},
		{"oversize", make([]byte, MaxMessage+100), 1, "exceeds 65536"},
		{"one byte over", make([]byte, MaxMessage+1), 1, "exceeds 65536"},
		{"other version, descriptors truncated", badVersion, 8, "unsupported protocol version"},
		{"oversize, descriptors truncated", make([]byte, MaxMessage+1), 8, "exceeds 65536"},
	} {
		before := fdCount(t)
		fds := pipes(t, tc.fds)
		_, _, err = a.UnixConn().WriteMsgUnix(tc.msg, unix.UnixRights(fds...), nil)
		require.NoError(t, err, tc.name)
		closeAll(fds)

		m, err := recv(t, b)
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
		assert.Equal(t, -1, m.FD)
		assert.Equal(t, before, fdCount(t), "%s: descriptor closed", tc.name)
	}
}

func TestMessageAtMaxSizeArrives(t *testing.T) {
	a, b := pair(t)
	msg, err := Encode(nil, TypeStatusReply, StatusReply{Last: true}, nil)
	require.NoError(t, err)
	msg = append(msg, make([]byte, MaxMessage-len(msg))...)
	_, _, err = a.UnixConn().WriteMsgUnix(msg, nil, nil)
	require.NoError(t, err)
	m, err := recv(t, b)
	require.NoError(t, err)
	assert.Equal(t, MaxMessage, headerPrefix+len(m.Header)+len(m.Payload))
}

func TestPeerCloseIsEOF(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Send(TypeAck, Ack{ID: 1}, nil, -1, time.Second))
	require.NoError(t, a.Close())

	m, err := recv(t, b)
	require.NoError(t, err, "a message sent before the close still arrives")
	assert.Equal(t, TypeAck, m.Type)
	_, err = recv(t, b)
	require.ErrorIs(t, err, io.EOF)
	assert.True(t, IsClosed(err))
	_, err = recv(t, b)
	require.ErrorIs(t, err, io.EOF, "and stays EOF")
}

func TestCloseUnblocksRecv(t *testing.T) {
	_, b := pair(t)
	done := make(chan error, 1)
	go func() { _, err := b.Recv(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, b.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
		assert.True(t, IsClosed(err))
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

// A peer that never reads fills the socket buffer: Send must fail once its
// timeout passes instead of blocking its caller.
func TestSendTimesOutWhenPeerNeverReads(t *testing.T) {
	a, _ := pair(t)
	payload := make([]byte, 32<<10)
	const timeout = 100 * time.Millisecond
	var err error
	var took time.Duration
	for i := 0; i < 1000 && err == nil; i++ {
		start := time.Now()
		err = a.Send(TypeStatusReply, StatusReply{Part: i}, payload, -1, timeout)
		took = time.Since(start)
	}
	require.Error(t, err, "the buffer never filled")
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.True(t, IsClosed(err))
	assert.GreaterOrEqual(t, took, timeout/2)
	assert.Less(t, took, 5*time.Second)

	// The deadline was only for that Send: a later Recv is not cut short.
	done := make(chan error, 1)
	go func() { _, err := a.Recv(); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("Recv returned early: %v", err)
	case <-time.After(2 * timeout):
	}
	a.Close()
	<-done
}

func TestConcurrentSends(t *testing.T) {
	a, b := pair(t)
	const senders, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				errs <- a.Send(TypeAck, Ack{ID: uint64(s*each + i)}, nil, -1, 5*time.Second)
			}
		})
	}
	seen := map[uint64]bool{}
	for range senders * each {
		m, err := recv(t, b)
		require.NoError(t, err)
		var ack Ack
		require.NoError(t, m.Unmarshal(&ack))
		seen[ack.ID] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Len(t, seen, senders*each)
}

func TestDialAndPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	require.NoError(t, err)
	defer ln.Close()

	_, err = Dial(filepath.Join(t.TempDir(), "none.sock"), time.Second)
	require.Error(t, err, "no socket")

	c, err := Dial(path, time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, ln.SetDeadline(time.Now().Add(5*time.Second)))
	uc, err := ln.AcceptUnix()
	require.NoError(t, err)
	defer uc.Close()

	for _, side := range []*net.UnixConn{uc, c.UnixConn()} {
		cred, err := PeerCred(side)
		require.NoError(t, err)
		assert.EqualValues(t, os.Getpid(), cred.Pid)
		assert.EqualValues(t, os.Getuid(), cred.Uid)
		assert.EqualValues(t, os.Getgid(), cred.Gid)
	}

	// And a message crosses the real connection.
	s, err := NewConn(uc)
	require.NoError(t, err)
	require.NoError(t, c.Send(TypeStatus, Status{}, nil, -1, time.Second))
	m, err := recv(t, s)
	require.NoError(t, err)
	assert.Equal(t, TypeStatus, m.Type)

	// PeerCred of a closed socket is an error, not a panic.
	closed, _ := pair(t)
	closed.Close()
	_, err = PeerCred(closed.UnixConn())
	require.Error(t, err)
}

func TestIsClosed(t *testing.T) {
	for _, err := range []error{io.EOF, net.ErrClosed, unix.ECONNRESET, unix.EPIPE, os.ErrDeadlineExceeded,
		fmt.Errorf("wrapped: %w", io.EOF), &net.OpError{Op: "write", Err: os.NewSyscallError("sendmsg", unix.EPIPE)}} {
		assert.True(t, IsClosed(err), "%v", err)
	}
	for _, err := range []error{nil, errors.New("other"), ErrVersion} {
		assert.False(t, IsClosed(err), "%v", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	a, b := pair(t)
	err := a.Send(TypeStatusReply, StatusReply{}, make([]byte, MaxMessage), -1, time.Second)
	require.ErrorIs(t, err, ErrTooLarge)
	// Nothing was sent: the next message is the next one received.
	require.NoError(t, a.Send(TypeAck, Ack{ID: 5}, nil, -1, time.Second))
	m, err := recv(t, b)
	require.NoError(t, err)
	assert.Equal(t, TypeAck, m.Type)
}
