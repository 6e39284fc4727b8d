package testutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portshare/portshare/sharer/nmf"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// SocketPath returns a control socket path in a fresh temporary directory
// (short enough for sun_path).
func SocketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ctl.sock")
}

// NetTCPSession runs one MC-NMF duplex session against addr: a preamble
// with via, each message as a SizedEnvelope round trip, then End. It
// returns the reply payloads, an *nmf.FaultError if the server sent a
// fault, or the I/O error. The whole session is bounded by timeout.
func NetTCPSession(addr, via string, timeout time.Duration, msgs ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	return NetTCPOn(c, nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: via, Encoding: nmf.EncodingBinarySession}), msgs...)
}

// NetTCPOn runs a session on an open connection, writing preamble first
// (split or malformed preambles are the caller's to make).
func NetTCPOn(c net.Conn, preamble []byte, msgs ...string) ([]string, error) {
	s, err := nmf.OpenWith(c, preamble)
	if err != nil {
		return nil, err
	}
	var replies []string
	for _, m := range msgs {
		p, err := s.RoundTrip([]byte(m))
		if err != nil {
			return replies, err
		}
		replies = append(replies, string(p))
	}
	return replies, s.End()
}

// ReadFault reads one record from c and returns its fault name, or an
// error if the next record is not a fault.
func ReadFault(c net.Conn) (string, error) {
	rec, err := nmf.NewReader(c, 0).Next()
	if err != nil {
		return "", err
	}
	if rec.Type != nmf.RecFault {
		return "", fmt.Errorf("want Fault, got record 0x%02x", rec.Type)
	}
	return nmf.FaultName(string(rec.Payload)), nil
}
