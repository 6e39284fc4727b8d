package faults

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCPExt holds the TcpExt counters of one network namespace, by the names
// the kernel gives them in /proc/net/netstat. The ones that tell about the
// listen backlog have accessors; any other is read by its name. A counter
// the kernel does not have reads as 0, so code written for one kernel
// still runs on another.
type TCPExt map[string]int64

// ListenOverflows counts SYNs and handshake-completing ACKs dropped
// because a listening socket's accept queue was full (key
// "ListenOverflows").
func (t TCPExt) ListenOverflows() int64 { return t["ListenOverflows"] }

// ListenDrops counts every SYN or ACK a listening socket dropped, for an
// overflow or any other reason (key "ListenDrops"); it is at least
// ListenOverflows.
func (t TCPExt) ListenDrops() int64 { return t["ListenDrops"] }

// ReqQFullDrop counts SYNs dropped because the SYN queue was full and SYN
// cookies were off (key "TCPReqQFullDrop").
func (t TCPExt) ReqQFullDrop() int64 { return t["TCPReqQFullDrop"] }

// ReqQFullDoCookies counts SYNs answered with a SYN cookie because the SYN
// queue was full (key "TCPReqQFullDoCookies").
func (t TCPExt) ReqQFullDoCookies() int64 { return t["TCPReqQFullDoCookies"] }

// SyncookiesSent counts SYN cookies sent (key "SyncookiesSent").
func (t TCPExt) SyncookiesSent() int64 { return t["SyncookiesSent"] }

// Sub returns a−b for every counter in either, so that a snapshot taken
// after a fault minus one taken before is what the fault did. A counter
// missing from one side counts as 0 there.
func (t TCPExt) Sub(b TCPExt) TCPExt {
	d := make(TCPExt, len(t))
	for k, v := range t {
		d[k] = v - b[k]
	}
	for k, v := range b {
		if _, ok := t[k]; !ok {
			d[k] = -v
		}
	}
	return d
}

// procNet returns the path of file name under the net directory of process
// pid. pid 0 is the calling thread, not the process: a goroutine inside
// (*Netns).Do has switched only its own thread into another namespace,
// and /proc/self/net would show the namespace of the process's main
// thread instead.
func procNet(pid int, name string) string {
	if pid == 0 {
		if _, err := os.Stat("/proc/thread-self/net"); err == nil {
			return "/proc/thread-self/net/" + name
		}
		return "/proc/self/net/" + name // kernels before 3.17
	}
	return "/proc/" + strconv.Itoa(pid) + "/net/" + name
}

// ReadTCPExt reads the TcpExt counters of the network namespace process
// pid is in (pid 0: the calling thread's, which is the process's own
// unless it runs inside (*Netns).Do). The counters are per namespace, not
// per process: any process of the namespace gives the same numbers. An
// unreadable or malformed file is an error naming the file.
func ReadTCPExt(pid int) (TCPExt, error) {
	return readTCPExtFile(procNet(pid, "netstat"))
}

func readTCPExtFile(path string) (TCPExt, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	t, err := ParseNetstat(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseNetstat parses the text of /proc/PID/net/netstat: pairs of lines,
// "TcpExt: NAME…" then "TcpExt: VALUE…", among other such pairs (IpExt,
// MPTcpExt), of which it keeps the first TcpExt one. No TcpExt pair, an
// empty one, a names line and values line of different lengths, a value
// that is not a whole number or a name given twice is an error.
func ParseNetstat(data []byte) (TCPExt, error) {
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		names, ok := strings.CutPrefix(lines[i], "TcpExt:")
		if !ok {
			continue
		}
		if i+1 >= len(lines) {
			return nil, fmt.Errorf("line %d: TcpExt names without a line of values", i+1)
		}
		values, ok := strings.CutPrefix(lines[i+1], "TcpExt:")
		if !ok {
			return nil, fmt.Errorf("line %d: TcpExt names not followed by TcpExt values", i+1)
		}
		nf, vf := strings.Fields(names), strings.Fields(values)
		if len(nf) != len(vf) {
			return nil, fmt.Errorf("line %d: %d TcpExt names but %d values", i+1, len(nf), len(vf))
		}
		if len(nf) == 0 {
			return nil, fmt.Errorf("line %d: TcpExt without counters", i+1)
		}
		t := make(TCPExt, len(nf))
		for j, n := range nf {
			v, err := strconv.ParseInt(vf[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: TcpExt %s: %q is not a count", i+2, n, vf[j])
			}
			if _, dup := t[n]; dup {
				return nil, fmt.Errorf("line %d: TcpExt %s given twice", i+1, n)
			}
			t[n] = v
		}
		return t, nil
	}
	return nil, errors.New("no TcpExt counters")
}

// A ListenQueue is one listening socket and the length of its accept
// queue: connections the kernel has completed and no accept(2) has taken
// yet. The kernel counts the queue full when it holds one more than the
// listen(2) backlog (capped at net.core.somaxconn), and from then on
// drops handshakes (TCPExt.ListenOverflows).
type ListenQueue struct {
	Addr   netip.AddrPort
	Queued int
}

// tcpListen is the st column of a listening socket (TCP_LISTEN).
const tcpListen = 0x0A

// ListenQueues returns the listening sockets on port of the network
// namespace process pid is in (pid 0: the calling thread's, as for
// ReadTCPExt), IPv4 then IPv6, in the kernel's order; none is an empty
// result, not an error. A kernel without IPv6 has no tcp6 file, which is
// no error either. An unreadable or malformed file is an error naming it.
// Unlike `portshare status`, it needs nothing of the daemon, so it reads the
// queue of a daemon that cannot answer: paused, say, or out of descriptors.
func ListenQueues(pid, port int) ([]ListenQueue, error) {
	var qs []ListenQueue
	for _, name := range []string{"tcp", "tcp6"} {
		path := procNet(pid, name)
		data, err := os.ReadFile(path)
		if name == "tcp6" && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		got, err := parseTCPTable(data, port)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		qs = append(qs, got...)
	}
	return qs, nil
}

// parseTCPTable returns the listening sockets on port (any port if 0) of
// the text of /proc/net/tcp or tcp6: a header line, then one socket a line,
//
//	sl local_address rem_address st tx_queue:rx_queue …
//	0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 …
//
// where rx_queue is the accept queue's length for a listening socket.
func parseTCPTable(data []byte, port int) ([]ListenQueue, error) {
	var qs []ListenQueue
	for i, line := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(line))
		if i == 0 || len(f) == 0 {
			continue // the header
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 5", i+1, len(f))
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q is not hex", i+1, f[3])
		}
		if st != tcpListen {
			continue
		}
		addr, err := parseProcAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if port != 0 && int(addr.Port()) != port {
			continue
		}
		_, rx, ok := strings.Cut(f[4], ":")
		n, err := strconv.ParseUint(rx, 16, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("line %d: queues %q are not tx:rx in hex", i+1, f[4])
		}
		qs = append(qs, ListenQueue{Addr: addr, Queued: int(n)})
	}
	return qs, nil
}

// parseProcAddr reads ADDR:PORT as /proc/net/tcp{,6} writes it: the port
// in hex, the address as hex 32-bit words each printed from the host's
// memory, so that on a little-endian machine 127.0.0.1 is 0100007F.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	p, err := strconv.ParseUint(hexPort, 16, 16)
	if !ok || err != nil || (len(hexAddr) != 8 && len(hexAddr) != 32) {
		return netip.AddrPort{}, fmt.Errorf("address %q is not hex ADDR:PORT", s)
	}
	b := make([]byte, 0, 16)
	for w := 0; w < len(hexAddr); w += 8 {
		v, err := strconv.ParseUint(hexAddr[w:w+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q is not hex ADDR:PORT", s)
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(v))
	}
	a, _ := netip.AddrFromSlice(b) // 4 or 16 bytes: cannot fail
	return netip.AddrPortFrom(a, uint16(p)), nil
}
