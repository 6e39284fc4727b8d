package faults

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// sampleNetstat is /proc/net/netstat as Linux 6.x writes it, cut short:
// TcpExt, IpExt and MPTcpExt pairs.
const sampleNetstat = `TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop TCPTimeouts
TcpExt: 7 3 1 0 6323 6330 2 5 1147
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts ListenOverflows
IpExt: 0 0 12 34 999
MPTcpExt: MPCapableSYNRX MPCapableSYNTX
MPTcpExt: 0 0
`

func TestParseNetstat(t *testing.T) {
	got, err := ParseNetstat([]byte(sampleNetstat))
	require.NoError(t, err)
	assert.Len(t, got, 9, "only the TcpExt pair")
	assert.EqualValues(t, 6323, got.ListenOverflows(), "TcpExt's, not IpExt's counter of the same name")
	assert.EqualValues(t, 6330, got.ListenDrops())
	assert.EqualValues(t, 5, got.ReqQFullDrop())
	assert.EqualValues(t, 2, got.ReqQFullDoCookies())
	assert.EqualValues(t, 7, got.SyncookiesSent())
	assert.EqualValues(t, 1147, got["TCPTimeouts"])

	old, err := ParseNetstat([]byte("TcpExt: ListenOverflows\nTcpExt: 4\n"))
	require.NoError(t, err)
	assert.Zero(t, old.ReqQFullDrop(), "a counter this kernel lacks reads as 0")
	assert.EqualValues(t, 4, old.ListenOverflows())
}

func TestParseNetstatRejectsMalformed(t *testing.T) {
	for name, text := range map[string]string{
		"empty":          "",
		"no TcpExt":      "IpExt: InNoRoutes\nIpExt: 0\n",
		"names only":     "TcpExt: ListenOverflows ListenDrops",
		"names, no vals": "TcpExt: ListenOverflows\nIpExt: 0\n",
		"short values":   "TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n",
		"long values":    "TcpExt: ListenOverflows\nTcpExt: 1 2\n",
		"not a number":   "TcpExt: ListenOverflows\nTcpExt: many\n",
		"overflow":       "TcpExt: ListenOverflows\nTcpExt: 99999999999999999999\n",
		"twice":          "TcpExt: ListenOverflows ListenOverflows\nTcpExt: 1 2\n",
		"no counters":    "TcpExt:\nTcpExt:\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseNetstat([]byte(text))
			require.Error(t, err)
			assert.Nil(t, got)
		})
	}
}

func TestReadTCPExtErrorsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netstat")
	require.NoError(t, os.WriteFile(path, []byte("TcpExt: ListenOverflows\nTcpExt: x\n"), 0o644))
	_, err := readTCPExtFile(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)

	_, err = ReadTCPExt(1 << 30) // above any pid_max
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/proc/1073741824/net/netstat")
}

func TestReadTCPExtOfThisProcess(t *testing.T) {
	self, err := ReadTCPExt(0)
	require.NoError(t, err)
	assert.Contains(t, self, "ListenOverflows")
	byPID, err := ReadTCPExt(os.Getpid())
	require.NoError(t, err)
	assert.ElementsMatch(t, slices.Collect(maps.Keys(self)), slices.Collect(maps.Keys(byPID)), "the same namespace's counters")
}

func TestTCPExtSub(t *testing.T) {
	after := TCPExt{"ListenOverflows": 10, "ListenDrops": 12, "New": 3}
	before := TCPExt{"ListenOverflows": 4, "ListenDrops": 12, "Gone": 2}
	assert.Equal(t, TCPExt{"ListenOverflows": 6, "ListenDrops": 0, "New": 3, "Gone": -2}, after.Sub(before))
	assert.Equal(t, TCPExt{"ListenOverflows": 10, "ListenDrops": 12, "New": 3}, after.Sub(nil))
	assert.Empty(t, TCPExt(nil).Sub(nil))
}

// littleEndian reports whether the samples below, written as an x86
// kernel writes them, are this machine's encoding.
func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

const sampleTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1137 1 00000000f73d179b 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1138 1 00000000f73d179c 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1139 1 00000000f73d179d 20 4 30 10 -1
   3: 0202000A:0050 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 1140 1 00000000f73d179e 100 0 0 10 0
`

const sampleTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
`

func TestParseTCPTable(t *testing.T) {
	if !littleEndian() {
		t.Skip("the samples are a little-endian kernel's")
	}
	got, err := parseTCPTable([]byte(sampleTCP), 8080)
	require.NoError(t, err)
	assert.Equal(t, []ListenQueue{
		{netip.MustParseAddrPort("127.0.0.1:8080"), 3},
		{netip.MustParseAddrPort("0.0.0.0:8080"), 0},
	}, got, "listening sockets on 8080 only, not the established one")

	got, err = parseTCPTable([]byte(sampleTCP), 0)
	require.NoError(t, err)
	assert.Len(t, got, 3)
	assert.Equal(t, ListenQueue{netip.MustParseAddrPort("10.0.2.2:80"), 1}, got[2])

	got, err = parseTCPTable([]byte(sampleTCP6), 8080)
	require.NoError(t, err)
	assert.Equal(t, []ListenQueue{
		{netip.MustParseAddrPort("[::1]:8080"), 2},
		{netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080"), 0},
	}, got)
	got, err = parseTCPTable([]byte(sampleTCP6), 8081)
	require.NoError(t, err)
	assert.Equal(t, []ListenQueue{{netip.MustParseAddrPort("[2001:db8::1]:8081"), 0}}, got)

	got, err = parseTCPTable([]byte(strings.SplitN(sampleTCP, "\n", 2)[0]+"\n"), 8080)
	require.NoError(t, err)
	assert.Empty(t, got, "a header and no socket")
}

func TestParseTCPTableRejectsMalformed(t *testing.T) {
	header := "  sl  local_address rem_address   st tx_queue rx_queue\n"
	for name, line := range map[string]string{
		"few fields":   "0: 0100007F:1F90 00000000:0000 0A",
		"bad state":    "0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000",
		"bad address":  "0: 0100007G:1F90 00000000:0000 0A 00000000:00000000",
		"short addr":   "0: 01007F:1F90 00000000:0000 0A 00000000:00000000",
		"no port":      "0: 0100007F 00000000:0000 0A 00000000:00000000",
		"bad queue":    "0: 0100007F:1F90 00000000:0000 0A 00000000",
		"queue not hx": "0: 0100007F:1F90 00000000:0000 0A 00000000:0000000Q",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseTCPTable([]byte(header+line+"\n"), 0)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "line 2")
		})
	}
}

// listenNoAccept makes a socket listening on addr:0 with backlog, which
// nothing accepts, and returns its port; the socket closes with the test.
// It returns errors rather than failing, so that it can run inside
// (*Netns).Do, off the test's goroutine.
func listenNoAccept(addr netip.Addr, backlog int) (fd, port int, err error) {
	var family int
	var sa unix.Sockaddr
	if addr.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: addr.As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: addr.As16()}
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	if err = unix.Bind(fd, sa); err == nil {
		err = unix.Listen(fd, backlog)
	}
	if err == nil {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	return fd, port, nil
}

// fillBacklog connects to addr until a connect times out, the sign that
// the accept queue is full and SYNs are being dropped, and returns the
// connections, which the caller closes.
func fillBacklog(addr string) ([]net.Conn, error) {
	var conns []net.Conn
	for range 64 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return conns, nil
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	return nil, fmt.Errorf("the accept queue of %s never filled", addr)
}

// overflow fills the backlog of a fresh never-accepting listener on addr
// and then connects extra times more, returning what ListenQueues saw and
// the TcpExt counters' change over the extra connects. Like
// listenNoAccept, it returns errors, for (*Netns).Do.
func overflow(addr netip.Addr, backlog, extra int) (qs []ListenQueue, delta TCPExt, err error) {
	fd, port, err := listenNoAccept(addr, backlog)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(fd)
	target := netip.AddrPortFrom(addr, uint16(port)).String()
	conns, err := fillBacklog(target)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if qs, err = ListenQueues(0, port); err != nil {
		return nil, nil, err
	}
	before, err := ReadTCPExt(0)
	if err != nil {
		return nil, nil, err
	}
	for range extra {
		if c, err := net.DialTimeout("tcp", target, 100*time.Millisecond); err == nil {
			c.Close()
		}
	}
	after, err := ReadTCPExt(0)
	if err != nil {
		return nil, nil, err
	}
	return qs, after.Sub(before), nil
}

// requireFull checks that qs is the one listener on addr with its accept
// queue full: the kernel queues one connection more than the backlog.
func requireFull(t *testing.T, qs []ListenQueue, addr netip.Addr, backlog int) {
	t.Helper()
	require.Len(t, qs, 1, "%v", qs)
	assert.Equal(t, addr, qs[0].Addr.Addr())
	assert.GreaterOrEqual(t, qs[0].Queued, backlog)
	assert.LessOrEqual(t, qs[0].Queued, backlog+1)
}

func TestBacklogOverflowShowsInKernelCounters(t *testing.T) {
	const backlog, extra = 2, 3
	lo := netip.MustParseAddr("127.0.0.1")
	qs, delta, err := overflow(lo, backlog, extra)
	require.NoError(t, err)
	requireFull(t, qs, lo, backlog)
	// Other tests share this namespace and may add overflows, never take
	// them away; each dropped SYN counts once (no retransmit within 100 ms).
	assert.GreaterOrEqual(t, delta.ListenOverflows(), int64(extra))
	assert.GreaterOrEqual(t, delta.ListenDrops(), delta.ListenOverflows())
}

func TestListenQueuesIPv6(t *testing.T) {
	lo6 := netip.MustParseAddr("::1")
	fd, port, err := listenNoAccept(lo6, 1)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer unix.Close(fd)
	c, err := net.DialTimeout("tcp", "[::1]:"+strconv.Itoa(port), time.Second)
	require.NoError(t, err)
	defer c.Close()
	// The client's connect returns before the server's side of the
	// handshake is done and queued.
	require.Eventually(t, func() bool {
		qs, err := ListenQueues(0, port)
		return err == nil && len(qs) == 1 && qs[0].Addr == netip.AddrPortFrom(lo6, uint16(port)) && qs[0].Queued == 1
	}, 2*time.Second, 10*time.Millisecond, "the listener on [::1]:%d with one connection queued", port)
}

func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte(sampleNetstat))
	f.Add([]byte("TcpExt: a\nTcpExt: -1\n"))
	f.Add([]byte("TcpExt: a b\nTcpExt: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseNetstat(data)
		if err != nil {
			require.Nil(t, got)
			return
		}
		require.NotEmpty(t, got)
		// Written back as the kernel writes them, the counters read the same.
		names := slices.Sorted(maps.Keys(got))
		values := make([]string, len(names))
		for i, n := range names {
			values[i] = strconv.FormatInt(got[n], 10)
		}
		again, err := ParseNetstat([]byte("TcpExt: " + strings.Join(names, " ") + "\nTcpExt: " + strings.Join(values, " ") + "\n"))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
