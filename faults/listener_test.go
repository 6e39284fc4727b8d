package faults

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/testutil"
)

// faultyListener wraps a loopback listener with specs and serves each
// accepted connection by echoing, until the test ends. It returns the
// listener and the times of accepts relative to the start.
func faultyListener(t *testing.T, specs ...string) (*Listener, *Log, chan time.Duration) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	parsed, err := ParseAll(Worker, specs)
	require.NoError(t, err)
	log := NewLog("test", nil, nil)
	start := time.Now()
	l, err := NewListener(ln, parsed, start, log)
	require.NoError(t, err)
	accepted := make(chan time.Duration, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- time.Since(start)
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l, log, accepted
}

// roundTrip connects, sends one byte and waits for its echo.
func roundTrip(t *testing.T, addr net.Addr, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(t0.Add(timeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return 0, err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return time.Since(t0), err
}

func TestSlowAcceptDelaysEachAccept(t *testing.T) {
	l, log, accepted := faultyListener(t, "slow-accept:delay=150ms")
	for range 3 {
		_, err := roundTrip(t, l.Addr(), 2*time.Second)
		require.NoError(t, err)
	}
	var times []time.Duration
	for range 3 {
		times = append(times, <-accepted)
	}
	assert.GreaterOrEqual(t, times[1]-times[0], 150*time.Millisecond, "each Accept waits its delay: %v", times)
	assert.GreaterOrEqual(t, times[2]-times[1], 150*time.Millisecond, "each Accept waits its delay: %v", times)
	l.Close()
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Equal(t, Start, ev[0].Phase)
	assert.Equal(t, End, ev[1].Phase)
	assert.Regexp(t, `^worker stopped; [34] connections hit$`, ev[1].Detail, "three accepts, and perhaps a fourth waiting when it closed")
}

func TestStallStopsAcceptingForItsWindow(t *testing.T) {
	l, log, accepted := faultyListener(t, "stall:at=100ms,for=500ms")
	_, err := roundTrip(t, l.Addr(), time.Second)
	require.NoError(t, err, "before the window")
	<-accepted
	time.Sleep(150 * time.Millisecond)
	took, err := roundTrip(t, l.Addr(), 2*time.Second)
	require.NoError(t, err, "the kernel queues the connection; it is served when the window ends")
	at := <-accepted
	assert.GreaterOrEqual(t, at, 600*time.Millisecond)
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(log.Events()) == 2 }, "stall window logged")
	ev := log.Events()
	assert.Equal(t, []Phase{Start, End}, []Phase{ev[0].Phase, ev[1].Phase})
	assert.InDelta(t, 500*time.Millisecond, ev[1].Time.Sub(ev[0].Time), float64(150*time.Millisecond))
}

func TestHangStopsAcceptingForGoodAndCloseEndsIt(t *testing.T) {
	l, _, accepted := faultyListener(t, "hang:at=50ms")
	time.Sleep(100 * time.Millisecond)
	_, err := roundTrip(t, l.Addr(), 300*time.Millisecond)
	require.Error(t, err, "connected by the kernel, never served")
	assert.Empty(t, accepted)
	closed := make(chan error, 1)
	go func() { _, err := l.Accept(); closed <- err }()
	l.Close()
	select {
	case err := <-closed:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Close left Accept blocked")
	}
}

func TestRefuseClosesItsShareOfConnections(t *testing.T) {
	l, log, _ := faultyListener(t, "refuse:p=0.5,seed=4")
	failed := 0
	for range 40 {
		if _, err := roundTrip(t, l.Addr(), 2*time.Second); err != nil {
			failed++
		}
	}
	assert.InDelta(t, 20, failed, 10, "about half refused")
	l.Close()
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Contains(t, ev[1].Detail, "connections hit")
}

func TestSlowMessageDelaysReplies(t *testing.T) {
	l, _, _ := faultyListener(t, "slow-message:delay=200ms")
	took, err := roundTrip(t, l.Addr(), 2*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, took, 200*time.Millisecond)
}

func TestCrashKillsAtItsTimeAfterStoppingAccepting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	log := NewLog("test", nil, nil)
	killed := make(chan struct{}, 1)
	l, err := newListener(ln, []Spec{MustParse(Worker, "crash:at=300ms,inflight=200ms")}, time.Now(), log, func() { killed <- struct{}{} })
	require.NoError(t, err)
	defer l.Close()
	acceptErr := make(chan error, 1)
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	time.Sleep(150 * time.Millisecond)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err, "the kernel still completes connections")
	defer c.Close()
	select {
	case <-killed:
	case <-time.After(2 * time.Second):
		t.Fatal("no crash")
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("accepted a connection after it stopped accepting")
	default:
	}
	l.Close()
	assert.ErrorIs(t, <-acceptErr, net.ErrClosed)
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Equal(t, Start, ev[0].Phase, "stopped accepting")
	assert.Equal(t, Instant, ev[1].Phase)
	assert.Contains(t, ev[1].Detail, "SIGKILL")
}

func TestCrashAfterCount(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	log := NewLog("test", nil, nil)
	var killed atomic.Int32
	l, err := newListener(ln, []Spec{MustParse(Worker, "crash:after=2")}, time.Now(), log, func() { killed.Add(1) })
	require.NoError(t, err)
	defer l.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		conns = append(conns, c)
	}
	c, err := l.Accept()
	require.NoError(t, err)
	c.Close()
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.EqualValues(t, 1, killed.Load())
	assert.Contains(t, log.Events()[0].Detail, "after 2 connections")
}

func TestCrashAfterCountCountsRefusedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var killed atomic.Int32
	l, err := newListener(ln, []Spec{MustParse(Worker, "refuse"), MustParse(Worker, "crash:after=2")}, time.Now(), nil, func() { killed.Add(1) })
	require.NoError(t, err)
	defer l.Close()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
	}
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.EqualValues(t, 1, killed.Load(), "the second connection, refused or not, is the crash's")
}

func TestSlowMessageKeepsCloseWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := NewListener(ln, []Spec{MustParse(Worker, "slow-message:delay=1ms")}, time.Now(), nil)
	require.NoError(t, err)
	defer l.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	c, err := l.Accept()
	require.NoError(t, err)
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	require.True(t, ok, "an accepted conn can half-close: %T", c)
	require.NoError(t, cw.CloseWrite())
	n, err := client.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "the client sees the half-close")
}

// Several goroutines accepting at once all respect a stall: none slips a
// connection through while it is in effect.
func TestStallHoldsConcurrentAccepts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	start := time.Now()
	l, err := NewListener(ln, []Spec{MustParse(Worker, "stall:at=200ms,for=800ms")}, start, nil)
	require.NoError(t, err)
	accepted := make(chan time.Duration, 4)
	done := make(chan struct{})
	for range 3 {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					done <- struct{}{}
					return
				}
				accepted <- time.Since(start)
				c.Close()
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	select {
	case at := <-accepted:
		assert.GreaterOrEqual(t, at, time.Second, "accepted only when the stall ended")
	case <-time.After(3 * time.Second):
		t.Fatal("never accepted")
	}
	l.Close()
	for range 3 {
		<-done
	}
}

func TestListenerRefusesOtherKinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = NewListener(ln, []Spec{MustParse(Client, "silent")}, time.Now(), nil)
	assert.ErrorContains(t, err, "client fault, not a worker fault")
	_, err = NewListener(ln, []Spec{MustParse(Worker, "crash:at=1s"), MustParse(Worker, "crash:after=1")}, time.Now(), nil)
	assert.ErrorContains(t, err, "crashes once")
}
