package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/portshare/portshare/sharer/nmf"
)

// Outcome classes. Every session ends in exactly one. The first eight are
// the contract's; protocol_error, client_error, aborted and error are
// ours, so that nothing is ever dropped from the counts.
const (
	OK             = "ok"              // the session completed as the protocol says
	Refused        = "refused"         // ECONNREFUSED: nothing listens, or the port stopped listening
	ConnectTimeout = "connect_timeout" // no SYN-ACK before the connect timeout (a full backlog drops SYNs)
	Reset          = "reset"           // ECONNRESET or EPIPE: the server aborted the connection
	EOF            = "eof"             // the server closed the connection before the session ended
	Timeout        = "timeout"         // connected, but the session did not end before its timeout
	ProtocolError  = "protocol_error"  // the server answered with bytes that are not the protocol
	ClientError    = "client_error"    // a local limit: EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS
	Aborted        = "aborted"         // stopped by the caller (Ctrl-C) before it ended
	Error          = "error"           // anything else; Result.Errors keeps samples of the messages

	faultPrefix = "fault:" // fault:<Name>: an MC-NMF Fault record, e.g. fault:EndpointNotFound
	httpPrefix  = "http:"  // http:<code>: an HTTP status other than 2xx
)

// FaultOutcome is the class of an MC-NMF Fault record with short name name.
func FaultOutcome(name string) string { return faultPrefix + name }

// HTTPOutcome is the class of an HTTP response with status code; 2xx is ok.
func HTTPOutcome(code int) string {
	if code >= 200 && code < 300 {
		return OK
	}
	return httpPrefix + strconv.Itoa(code)
}

// Classify maps the error a session ended with to its outcome class. A nil
// error is ok. The errno decides where there is one, so the class does not
// depend on how a library words its messages.
func Classify(err error) string {
	var fe *nmf.FaultError
	var ne net.Error
	switch {
	case err == nil:
		return OK
	case errors.As(err, &fe):
		return FaultOutcome(fe.Name)
	case errors.Is(err, context.Canceled):
		return Aborted
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return Reset
	case isDial(err) && (errors.Is(err, syscall.ETIMEDOUT) || errors.As(err, &ne) && ne.Timeout()):
		return ConnectTimeout
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return EOF
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.ENOBUFS):
		return ClientError
	}
	return Error
}

// dialError marks an error from the connect phase.
type dialError struct{ error }

func (e dialError) Unwrap() error { return e.error }

func isDial(err error) bool {
	var de dialError
	var oe *net.OpError
	return errors.As(err, &de) || errors.As(err, &oe) && oe.Op == "dial"
}

// classifyMessage classifies an error known only by its text, as hey's
// requester reports them ("Get \"http://…\": dial tcp …: connect:
// connection refused"). Go's net and net/http word errno errors with the
// strerror text, which is stable.
func classifyMessage(msg string) string {
	// Drop net/http's `Get "URL": ` prefix: the URL is the caller's text.
	if i := strings.Index(msg, `": `); i >= 0 && strings.Contains(msg[:i], ` "`) {
		msg = msg[i+3:]
	}
	has := func(s string) bool { return strings.Contains(msg, s) }
	switch {
	case has("connection refused"):
		return Refused
	case has("connection reset"), has("broken pipe"):
		return Reset
	case has("dial tcp") && (has("i/o timeout") || has("connection timed out")):
		return ConnectTimeout
	case has("Client.Timeout"), has("deadline exceeded"), has("i/o timeout"):
		return Timeout
	case has("EOF"), has("server closed idle connection"):
		return EOF
	case has("too many open files"), has("cannot assign requested address"), has("no buffer space"):
		return ClientError
	case has("malformed HTTP"):
		return ProtocolError
	case has("context canceled"):
		return Aborted
	}
	return Error
}
