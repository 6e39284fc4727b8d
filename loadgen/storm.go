package loadgen

import (
	"context"
	"io"
	"net"
	"time"
)

// stormSession is one connection of a connection storm (as tcpkali makes
// them): connect, optionally send bytes after a delay, hold the connection
// open reading whatever comes, close. It is ok if the connection was made
// and the server neither closed nor reset it while it was held.
type stormSession struct {
	addr      string
	dialer    net.Dialer
	send      []byte
	sendDelay time.Duration
	hold      time.Duration
	timeout   time.Duration // for sending: a server that reads nothing cannot hold us
}

func newStormSession(o Options) *stormSession {
	return &stormSession{addr: o.Target.Addr, dialer: net.Dialer{Timeout: o.ConnectTimeout}, send: o.Send, sendDelay: o.SendDelay, hold: o.Hold, timeout: o.Timeout}
}

func (s *stormSession) Run(ctx context.Context, ph *Phases) (string, error) {
	c, done, err := open(ctx, &s.dialer, s.addr, ph)
	if err != nil {
		return Classify(err), err
	}
	defer done()
	if len(s.send) > 0 {
		if err := sleep(ctx, s.sendDelay); err != nil {
			return Aborted, err
		}
		c.SetWriteDeadline(time.Now().Add(s.timeout))
		if _, err := c.Write(s.send); err != nil {
			return Classify(err), err
		}
	}
	if s.hold <= 0 {
		return OK, nil
	}
	until := time.Now().Add(s.hold)
	c.SetReadDeadline(until)
	_, err = io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy ends without an error at EOF
	}
	if !time.Now().Before(until) && ctx.Err() == nil {
		return OK, nil // held for the whole time
	}
	return Classify(err), err
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
