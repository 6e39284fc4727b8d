package faults

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestNetns returns a Netns closed with the test, or skips the test
// where namespaces cannot be made.
func newTestNetns(t *testing.T) *Netns {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	n, err := NewNetns()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, n.Close()) })
	return n
}

// namespaces lists the named network namespaces (`ip netns list`).
func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(tool("ip"), "netns", "list").Output()
	require.NoError(t, err)
	var names []string
	for l := range strings.Lines(string(out)) {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0]) // "NAME (id: N)"
		}
	}
	return names
}

func TestNetnsCreateAndClose(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	n, err := NewNetns()
	require.NoError(t, err)
	defer n.Close()
	assert.NotEqual(t, n.Client(), n.Daemon())
	assert.Subset(t, namespaces(t), []string{n.Client(), n.Daemon()})
	assert.True(t, n.ClientAddr().Is4() && n.ClientAddr().IsPrivate(), "%v", n.ClientAddr())
	p := netip.PrefixFrom(n.ClientAddr(), 30).Masked()
	assert.True(t, p.Contains(n.DaemonAddr()), "one /30: %v %v", n.ClientAddr(), n.DaemonAddr())
	assert.NotEqual(t, n.ClientAddr(), n.DaemonAddr())

	for _, end := range []struct {
		ns, link string
		addr     netip.Addr
	}{{n.Client(), n.ClientLink(), n.ClientAddr()}, {n.Daemon(), n.DaemonLink(), n.DaemonAddr()}} {
		out, err := exec.Command(tool("ip"), "-n", end.ns, "-o", "addr", "show", "dev", end.link).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), end.addr.String()+"/30")
		out, err = exec.Command(tool("ip"), "-n", end.ns, "-o", "link", "show").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Regexp(t, `lo: <LOOPBACK,UP`, string(out))
		assert.Regexp(t, end.link+`@\S+: <[^>]*\bUP\b`, string(out))
	}

	other := newTestNetns(t)
	assert.NotEqual(t, n.DaemonAddr(), other.DaemonAddr(), "parallel pairs get their own /30")

	require.NoError(t, n.Close())
	assert.NotContains(t, namespaces(t), n.Client())
	assert.NotContains(t, namespaces(t), n.Daemon())
	assert.NoError(t, n.Close(), "Close twice")
}

func TestNetnsFailedCreationLeavesNothing(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	t.Run("second namespace taken", func(t *testing.T) {
		base := nsBase()
		require.NoError(t, runTool("ip", "netns", "add", base+"-d"))
		t.Cleanup(func() { runTool("ip", "netns", "del", base+"-d") })
		_, err := newNetns(base, "ps"+randomHex(), reservePrefix())
		require.Error(t, err)
		assert.Contains(t, err.Error(), base+"-d", "the error has ip's command line")
		assert.NotContains(t, namespaces(t), base+"-c", "the namespace made before the failure is gone")
	})
	t.Run("veth fails", func(t *testing.T) {
		base := nsBase()
		prefix := reservePrefix()
		_, err := newNetns(base, "a-link-name-longer-than-IFNAMSIZ", prefix)
		require.Error(t, err)
		t.Log(err)
		_, held := inUse.Load(prefix)
		assert.False(t, held, "the /30 is free again")
		assert.NotContains(t, err.Error(), "\n", "one line")
		names := namespaces(t)
		assert.NotContains(t, names, base+"-c")
		assert.NotContains(t, names, base+"-d")
	})
}

// echoServer serves, in goroutines of its own, an echo on ln until the
// test ends.
func echoServer(t *testing.T, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// listenIn listens on addr:0 in namespace ns of n, for the test's length.
func listenIn(t *testing.T, n *Netns, ns string, addr netip.Addr) net.Listener {
	t.Helper()
	var ln net.Listener
	require.NoError(t, n.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}))
	return ln
}

func TestNetnsDoListenInOneDialFromTheOther(t *testing.T) {
	n := newTestNetns(t)
	ln := listenIn(t, n, n.Daemon(), n.DaemonAddr())
	echoServer(t, ln)
	addr := ln.Addr().String()

	_, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	require.Error(t, err, "the daemon namespace's address is not reachable from ours")

	var c net.Conn
	require.NoError(t, n.Do(n.Client(), func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}))
	defer c.Close()
	assert.Equal(t, n.ClientAddr().String(), c.LocalAddr().(*net.TCPAddr).IP.String())
	// The socket stays in the client namespace after Do: the echo works
	// from this goroutine.
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))

	port := ln.Addr().(*net.TCPAddr).Port
	var inside []ListenQueue
	require.NoError(t, n.Do(n.Daemon(), func() (err error) { inside, err = ListenQueues(0, port); return err }))
	assert.Equal(t, []ListenQueue{{netip.AddrPortFrom(n.DaemonAddr(), uint16(port)), 0}}, inside,
		"pid 0 reads the namespace the calling thread is in")
	outside, err := ListenQueues(0, port)
	require.NoError(t, err)
	assert.NotContains(t, outside, inside[0])
}

func TestNetnsDoErrors(t *testing.T) {
	n := newTestNetns(t)
	called := false
	err := n.Do("ps-no-such-namespace", func() error { called = true; return nil })
	require.Error(t, err)
	assert.False(t, called)
	assert.Contains(t, err.Error(), "ps-no-such-namespace")

	assert.EqualError(t, n.Do(n.Daemon(), func() error { return io.ErrUnexpectedEOF }), io.ErrUnexpectedEOF.Error())
	assert.PanicsWithValue(t, "boom", func() { n.Do(n.Daemon(), func() error { panic("boom") }) })
}

func TestNetnsKernelCountersArePerNamespace(t *testing.T) {
	n := newTestNetns(t)
	const backlog, extra = 1, 2
	lo := netip.MustParseAddr("127.0.0.1")
	var qs []ListenQueue
	var delta TCPExt
	require.NoError(t, n.Do(n.Daemon(), func() (err error) {
		qs, delta, err = overflow(lo, backlog, extra)
		return err
	}))
	requireFull(t, qs, lo, backlog)
	// Nothing else runs in this namespace: the count is exact.
	assert.EqualValues(t, extra, delta.ListenOverflows())

	var inside TCPExt
	require.NoError(t, n.Do(n.Daemon(), func() (err error) { inside, err = ReadTCPExt(0); return err }))
	assert.Positive(t, inside.ListenOverflows())

	// A process in the namespace shows its counters by its pid.
	sleeper := n.Command(n.Daemon(), "sleep", "30")
	require.NoError(t, sleeper.Start())
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	var byPID TCPExt
	require.Eventually(t, func() bool {
		// Until ip execs sleep, the pid is ip's, still in our namespace.
		var err error
		byPID, err = ReadTCPExt(sleeper.Process.Pid)
		return err == nil && byPID.ListenOverflows() == inside.ListenOverflows()
	}, 5*time.Second, 10*time.Millisecond, "counters of pid %d: %v, want %v", sleeper.Process.Pid, byPID.ListenOverflows(), inside.ListenOverflows())
}

func TestNetemArgs(t *testing.T) {
	for spec, want := range map[string]string{
		"netem:delay=50ms": "netem delay 50000us",
		"netem:delay=50ms,jitter=5ms,loss=1%,reorder=25%": "netem delay 50000us 5000us loss 1% reorder 25%",
		"netem:loss=0.5%":                                     "netem loss 0.5%",
		"netem:loss=0.01":                                     "netem loss 1%",
		"netem:delay=1m,jitter=1500us":                        "netem delay 60000000us 1500us",
		"netem:at=1s,for=2s,delay=250us":                      "netem delay 250us",
		"netem:delay=10ms,reorder=0.25,loss=100%,jitter=10ms": "netem delay 10000us 10000us loss 100% reorder 25%",
	} {
		assert.Equal(t, want, strings.Join(netemArgs(MustParse(Network, spec)), " "), spec)
	}
}

func TestApplyNetemRejectsOtherFaults(t *testing.T) {
	err := (&Netns{}).ApplyNetem(MustParse(Worker, "stall:for=1s"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not netem")
}

// connectTime returns the median of several connects from the client
// namespace to addr.
func connectTime(t *testing.T, n *Netns, addr string) time.Duration {
	t.Helper()
	var times []time.Duration
	require.NoError(t, n.Do(n.Client(), func() error {
		for range 5 {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			times = append(times, time.Since(start))
			c.Close()
		}
		return nil
	}))
	slices.Sort(times)
	return times[len(times)/2]
}

func TestNetemDelayRaisesConnectTime(t *testing.T) {
	if err := NetemAvailable(); err != nil {
		t.Skip(err)
	}
	n := newTestNetns(t)
	ln := listenIn(t, n, n.Daemon(), n.DaemonAddr())
	echoServer(t, ln)
	addr := ln.Addr().String()

	base := connectTime(t, n, addr)
	require.NoError(t, n.ApplyNetem(MustParse(Network, "netem:delay=50ms")))
	delayed := connectTime(t, n, addr)
	// The SYN-ACK leaves the daemon's namespace, so waits 50 ms; netem
	// never sends early.
	assert.GreaterOrEqual(t, delayed, 50*time.Millisecond)
	assert.GreaterOrEqual(t, delayed-base, 49*time.Millisecond, "base %v, with netem %v", base, delayed)

	require.NoError(t, n.ApplyNetem(MustParse(Network, "netem:delay=20ms,jitter=1ms,loss=0%,reorder=0%")), "replace")
	require.NoError(t, n.ClearNetem())
	assert.Less(t, connectTime(t, n, addr), 25*time.Millisecond, "cleared")
	require.NoError(t, n.ClearNetem(), "nothing left to clear")
}

func TestNetemUnavailableIsExplained(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	reason := NetemAvailable()
	if reason == nil {
		t.Skip("this kernel has netem")
	}
	assert.NotContains(t, reason.Error(), "\n")
	assert.Equal(t, reason, NetemAvailable(), "the answer is cached")

	n := newTestNetns(t)
	err := n.ApplyNetem(MustParse(Network, "netem:delay=50ms"))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\n", "tc's message on one line")
	assert.Contains(t, err.Error(), n.DaemonLink(), "the command line")
	if strings.Contains(reason.Error(), "sch_netem") {
		assert.Contains(t, err.Error(), "sch_netem")
	}
	assert.NoError(t, n.ClearNetem(), "no netem to remove is no error")
	t.Log("netem unavailable: " + reason.Error())
}

func TestAvailableIsOneLine(t *testing.T) {
	for _, err := range []error{Available(), NetemAvailable()} {
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
			assert.NotEmpty(t, strings.TrimSpace(err.Error()))
		}
	}
}

// Namespaces of a process that died without cleaning up are deleted by
// the next one; those of live processes are left alone.
func TestStaleNamespacesOfDeadProcessesAreRemoved(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	stale := fmt.Sprintf("ps-%d-%s-c", dead.Process.Pid, randomHex())
	mine := nsBase() + "-c"
	for _, ns := range []string{stale, mine} {
		require.NoError(t, runTool("ip", "netns", "add", ns))
		t.Cleanup(func() { runTool("ip", "netns", "del", ns) })
	}
	removeStaleNamespaces()
	assert.NotContains(t, namespaces(t), stale)
	assert.Contains(t, namespaces(t), mine)
}
