package daemon

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/sniff"
)

// conn is one accepted client connection. Until its routing key is known it
// belongs to its own goroutine; after that its mutable fields are guarded
// by Daemon.mu.
type conn struct {
	id       uint64
	tcp      *net.TCPConn
	port     int
	accepted time.Time
	pre      []byte // every byte read so far: replayed by the worker
	key      sniff.Key

	gate     *gate       // the listening socket's max_pending_connections gate
	token    atomic.Bool // holds a token of gate
	finished atomic.Bool // outcome recorded

	route         *routeEntry
	worker        *registration // while in flight
	qelem         *list.Element // position in route.queue while queued
	dl            deadline      // receive, queue or dispatch deadline (one at a time)
	queueDeadline time.Time     // reclaim: set when first queued
}

// readBufPool holds SMSvcHost-sized read buffers. A connection borrows one
// only while the kernel has bytes for it, so 10,000 silent clients cost no
// buffers at all.
var readBufPool = sync.Pool{New: func() any { b := make([]byte, 2500); return &b }}

// Sniff failures that are not *sniff.Error.
var (
	errEmpty   = errors.New("closed before sending anything")
	errEOF     = errors.New("closed before the routing key was complete")
	errTimeout = errors.New("receive_timeout expired")
)

// serveConn reads c's routing key within receive_timeout and routes it.
func (d *Daemon) serveConn(c *conn) {
	cfg := d.cfg.Load()
	key, err := d.sniffConn(c, cfg)
	if err != nil {
		d.sniffFailed(c, err)
		return
	}
	c.key = key
	d.route(c, cfg)
}

// sniffConn reads until the sniffer has the key, with one deadline for the
// whole key (a dribbling client cannot extend it), kept by the daemon's
// clock: at expiry the clock wakes the read with a past deadline.
func (d *Daemon) sniffConn(c *conn, cfg *config.Config) (sniff.Key, error) {
	s := sniff.New(sniff.Limits{MaxHTTPHead: cfg.MaxHTTPHead})
	d.clock.schedule(&c.dl, c.accepted.Add(cfg.ReceiveTimeout), func(gen uint64) {
		if d.clock.current(&c.dl, gen) {
			c.tcp.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer d.clock.cancel(&c.dl)
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		return sniff.Key{}, err
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp := readBufPool.Get().(*[]byte)
			n, rerr = unix.Read(int(fd), *bp)
			if n > 0 {
				c.pre = append(c.pre, (*bp)[:n]...)
			}
			readBufPool.Put(bp)
			return rerr != unix.EAGAIN
		})
		if d.closing.Load() {
			return sniff.Key{}, errClosing
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.key.Protocol = s.Protocol() // an HTTP client is told 408
			return sniff.Key{}, errTimeout
		case err != nil:
			return sniff.Key{}, err
		case rerr != nil:
			return sniff.Key{}, os.NewSyscallError("read", rerr)
		case n == 0 && len(c.pre) == 0:
			return sniff.Key{}, errEmpty
		case n == 0:
			return sniff.Key{}, errEOF
		}
		key, done, err := s.Feed(c.pre[len(c.pre)-n:])
		if err != nil || done {
			return key, err
		}
	}
}

// sniffFailed ends a connection whose key could not be read. Under reclaim a
// net.tcp client is told why with a framing fault; compat aborts it without
// one, as SMSvcHost does. HTTP clients always get a status.
func (d *Daemon) sniffFailed(c *conn, err error) {
	var se *sniff.Error
	switch {
	case errors.Is(err, errClosing):
		d.finish(c, Shutdown, "")
		d.closeConn(c)
	case errors.Is(err, errTimeout):
		d.finish(c, ReceiveTimeout, "receive_timeout")
		if c.key.Protocol == sniff.HTTP {
			d.reply(c, httpResponse(408, "the request head did not arrive within receive_timeout"))
		} else {
			d.abort(c)
		}
	case errors.Is(err, errEmpty):
		d.finish(c, ProtocolFailure, "empty")
		d.closeConn(c)
	case errors.As(err, &se):
		d.finish(c, ProtocolFailure, se.Reason)
		d.log.Debug("protocol failure", "conn", c.id, "remote", c.tcp.RemoteAddr(), "err", err)
		switch {
		case se.Status != 0:
			d.reply(c, httpResponse(se.Status, se.Detail))
		case se.Fault != "" && d.policy == config.Reclaim:
			d.reply(c, nmf.AppendFault(nil, se.Fault))
		default:
			d.abort(c)
		}
	case errors.Is(err, errEOF):
		d.finish(c, ProtocolFailure, "eof")
		d.abort(c)
	case errors.Is(err, unix.ECONNRESET):
		d.finish(c, ProtocolFailure, "reset")
		d.closeConn(c)
	default:
		d.finish(c, ProtocolFailure, "read_error")
		d.abort(c)
	}
}

// abort closes c with a reset, as SMSvcHost's Abort does.
func (d *Daemon) abort(c *conn) {
	c.tcp.SetLinger(0)
	d.closeConn(c)
}

// Fault and refusal replies are bounded like SMSvcHost's: the send and the
// drain of the client's remaining input take at most a minute together,
// and at most 64 KiB is drained.
const (
	replyTimeout = time.Minute
	replyDrain   = 64 << 10
)

// reply writes msg to the client, shuts down sending and drains the
// client's input (so the reply is not destroyed by a reset), then closes.
// It runs on its own goroutine: callers may hold locks.
func (d *Daemon) reply(c *conn, msg []byte) {
	d.wg.Go(func() {
		defer d.closeConn(c)
		c.tcp.SetDeadline(time.Now().Add(replyTimeout))
		if _, err := c.tcp.Write(msg); err != nil {
			return
		}
		c.tcp.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c.tcp, replyDrain))
	})
}

// refusal is what tells c's client it cannot be served: the framing fault
// for net.tcp, the matching status for HTTP (404 for EndpointNotFound, 503
// otherwise), nothing for TLS.
func refusal(c *conn, fault string) []byte {
	switch c.key.Protocol {
	case sniff.NetTCP:
		return nmf.AppendFault(nil, fault)
	case sniff.HTTP:
		if fault == nmf.FaultEndpointNotFound {
			return httpResponse(404, fault)
		}
		return httpResponse(503, fault)
	}
	return nil
}

// refuse tells a routed client it cannot be served, then closes; a TLS
// client is just closed.
func (d *Daemon) refuse(c *conn, fault string) {
	if msg := refusal(c, fault); msg != nil {
		d.reply(c, msg)
	} else {
		d.closeConn(c)
	}
}

// shutdownSocket shuts a client socket down: the copy a worker holds too,
// since both share one socket.
func shutdownSocket(tc *net.TCPConn, how int) {
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), how) })
	}
}

var statusText = map[int]string{
	400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 431: "Request Header Fields Too Large",
	503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

func httpResponse(status int, detail string) []byte {
	text := statusText[status]
	if text == "" {
		text = "Error"
	}
	body := fmt.Sprintf("portshare: %d %s", status, text)
	if detail != "" {
		body += ": " + detail
	}
	body += "\n"
	extra := ""
	if status == 503 && detail == nmf.FaultServerTooBusy {
		extra = "Retry-After: 1\r\n" // busy for now; other 503s are not so soon over
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s",
		status, text, len(body), extra, body)
}
