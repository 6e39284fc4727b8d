package testutil

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Misbehaving servers on 127.0.0.1 for client tests. Each stops, and
// closes every connection it holds, when the test ends.

// ClosedPort returns an address where nothing listens: connects are
// refused.
func ClosedPort(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// SilentServer accepts connections and holds them without reading or
// writing until the test ends.
func SilentServer(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn, done <-chan struct{}) { <-done })
}

// ResetServer accepts each connection and closes it with SO_LINGER 0, so
// the client's next read gets ECONNRESET.
func ResetServer(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn, _ <-chan struct{}) {
		c.(*net.TCPConn).SetLinger(0)
	})
}

// ClosingServer accepts each connection, waits after, and closes it
// normally: the client reads EOF.
func ClosingServer(t testing.TB, after time.Duration) string {
	t.Helper()
	return Serve(t, func(c net.Conn, done <-chan struct{}) {
		select {
		case <-time.After(after):
		case <-done:
		}
	})
}

// Serve listens on 127.0.0.1, runs handle in its own goroutine for each
// connection it accepts, and closes the connection when handle returns.
// done closes when the test ends; the cleanup then waits for every handle.
// It returns the address.
func Serve(t testing.TB, handle func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c, done)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// FullBacklog returns the address of a listening socket that never
// accepts and whose accept queue is already full (listen backlog 0, filled
// by connections it holds until the test ends): the kernel drops further
// SYNs, so connects time out or succeed only after SYN retries.
func FullBacklog(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	for i := 0; ; i++ {
		if i == 64 {
			t.Fatalf("the accept queue of %s never filled", addr)
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // a SYN was dropped: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
}

// ReplyingServer accepts each connection, writes reply at once, and holds
// the connection until the test ends: a server that speaks another
// protocol.
func ReplyingServer(t testing.TB, reply []byte) string {
	t.Helper()
	return Serve(t, func(c net.Conn, done <-chan struct{}) {
		c.Write(reply)
		<-done
	})
}
