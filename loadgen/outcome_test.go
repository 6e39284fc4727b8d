package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/testutil"
)

// firstError connects to addr and reads one byte within wait, and returns
// the first error (a connect error marked as one).
func firstError(addr string, wait time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return dialError{err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestClassifyRealErrors(t *testing.T) {
	for _, c := range []struct {
		name, addr string
		wait       time.Duration
		want       string
	}{
		{"nothing listens", testutil.ClosedPort(t), time.Second, Refused},
		{"accept queue full", testutil.FullBacklog(t), time.Second, ConnectTimeout},
		{"server resets", testutil.ResetServer(t), 2 * time.Second, Reset},
		{"server closes", testutil.ClosingServer(t, 0), 2 * time.Second, EOF},
		{"server silent", testutil.SilentServer(t), 50 * time.Millisecond, Timeout},
	} {
		err := firstError(c.addr, c.wait)
		assert.Equal(t, c.want, Classify(err), "%s: %v", c.name, err)
	}
}

func TestClassifyWrappedErrors(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                      OK,
		&nmf.FaultError{Name: "ServerTooBusy"}:   "fault:ServerTooBusy",
		fmt.Errorf("x: %w", io.ErrUnexpectedEOF): EOF,
		fmt.Errorf("x: %w", os.ErrDeadlineExceeded): Timeout,
		context.Canceled: Aborted,
		&net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}:         ClientError,
		&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}: ClientError,
		&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}:          Reset,
		errors.New("something new"): Error,
	} {
		assert.Equal(t, want, Classify(err), "%v", err)
	}
	assert.Equal(t, OK, HTTPOutcome(204))
	assert.Equal(t, "http:404", HTTPOutcome(404))
	assert.Equal(t, "http:503", HTTPOutcome(503))
}

// hey reports errors only as text; the wording is Go's.
func TestClassifyMessage(t *testing.T) {
	for msg, want := range map[string]string{
		`Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused`:                          Refused,
		`Get "http://127.0.0.1:9/": read tcp 127.0.0.1:5->127.0.0.1:9: read: connection reset by peer`:          Reset,
		`Get "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: i/o timeout`:                                          ConnectTimeout,
		`Get "http://127.0.0.1:9/": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`: Timeout,
		`Get "http://127.0.0.1:9/": EOF`:                                                                     EOF,
		`Get "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: socket: too many open files`:                       ClientError,
		`Get "http://127.0.0.1:9/": net/http: HTTP/1.x transport connection broken: malformed HTTP response`: ProtocolError,
		`Get "http://127.0.0.1:9/": context canceled`:                                                        Aborted,
		`something else`: Error,
		`Get "http://127.0.0.1:9/EOF": net/http: HTTP/1.x transport connection broken: malformed HTTP response "x"`: ProtocolError,
	} {
		assert.Equal(t, want, classifyMessage(msg), msg)
	}
}

// Running out of descriptors is the client's own failure, not the
// server's: client_error, with the errno in the samples.
func TestOutOfDescriptorsIsAClientError(t *testing.T) {
	addr := testutil.FullBacklog(t) // connects hang, holding only our descriptors
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	low := lim
	low.Cur = uint64(testutil.FDCount(t, os.Getpid()) + 10)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
	tg, err := ParseTarget("tcp://" + addr)
	require.NoError(t, err)
	r, err := Run(context.Background(), Options{Target: tg,
		Pacer: &Constant{Per: 1000}, Count: 40, MaxInFlight: 100, ConnectTimeout: 300 * time.Millisecond})
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	require.NoError(t, err)
	assert.Positive(t, r.Outcomes[ClientError], "%v", r.Outcomes)
	assert.Equal(t, int64(40), r.Outcomes[ClientError]+r.Outcomes[ConnectTimeout], "%v", r.Outcomes)
	assert.Contains(t, fmt.Sprint(r.Errors), "too many open files")
}
