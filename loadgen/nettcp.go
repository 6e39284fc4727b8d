package loadgen

import (
	"bytes"
	"context"
	"net"
	"time"

	"github.com/portshare/portshare/sharer/nmf"
)

// netTCPSession is an MC-NMF duplex session, as a WCF NetTcpBinding client
// opens one: the preamble with the target as Via (binary-session
// encoding), PreambleAck, Messages SizedEnvelope round trips, End.
type netTCPSession struct {
	addr     string
	preamble []byte
	payload  []byte
	messages int
	dialer   net.Dialer
	timeout  time.Duration
}

func newNetTCPSession(o Options) *netTCPSession {
	return &netTCPSession{
		addr:     o.Target.Addr,
		preamble: nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: o.Target.URL, Encoding: nmf.EncodingBinarySession}),
		payload:  bytes.Repeat([]byte{'x'}, o.MessageSize),
		messages: o.Messages,
		dialer:   net.Dialer{Timeout: o.ConnectTimeout},
		timeout:  o.Timeout,
	}
}

func (s *netTCPSession) Run(ctx context.Context, ph *Phases) (string, error) {
	c, done, err := open(ctx, &s.dialer, s.addr, ph)
	if err != nil {
		return Classify(err), err
	}
	defer done()
	t0 := time.Now()
	c.SetDeadline(t0.Add(s.timeout))
	return s.converse(c, s.preamble, ph, t0)
}

// converse carries the session on over c, connected and with its deadline
// set: it writes preamble (none: the caller has written one of its own),
// waits for PreambleAck (the handshake, timed from t0), makes the round
// trips and ends the session.
func (s *netTCPSession) converse(c net.Conn, preamble []byte, ph *Phases, t0 time.Time) (string, error) {
	sess, err := nmf.OpenWith(c, preamble)
	if err != nil {
		return classifyNMF(err), err
	}
	ph.Handshake = time.Since(t0)
	for range s.messages {
		m0 := time.Now()
		if _, err := sess.RoundTrip(s.payload); err != nil {
			return classifyNMF(err), err
		}
		ph.Message(time.Since(m0))
	}
	if err := sess.End(); err != nil {
		return classifyNMF(err), err
	}
	return OK, nil
}

// classifyNMF classifies a session error: what is not an I/O error is a
// record that breaks the framing.
func classifyNMF(err error) string {
	if c := Classify(err); c != Error {
		return c
	}
	return ProtocolError
}

// dial connects to addr and reports the connect phase; its errors are
// marked as connect errors for Classify.
func dial(ctx context.Context, d *net.Dialer, addr string, ph *Phases) (net.Conn, error) {
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError{err}
	}
	ph.Connect = time.Since(t0)
	return c, nil
}

// open dials a session's own connection and makes ctx's end interrupt any
// I/O on it (a deadline in the past). done closes it.
func open(ctx context.Context, d *net.Dialer, addr string, ph *Phases) (c net.Conn, done func(), err error) {
	c, err = dial(ctx, d, addr, ph)
	if err != nil {
		return nil, nil, err
	}
	stop := interruptOnDone(ctx, c)
	return c, func() { stop(); c.Close() }, nil
}

// interruptOnDone makes ctx's end close c, which fails its pending and
// later I/O whatever deadlines the session sets; the returned func undoes
// that.
func interruptOnDone(ctx context.Context, c net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}
