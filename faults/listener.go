package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Listener wraps a worker's net.Listener with worker faults, so that any
// service — the reference worker or a Go service on the worker library —
// can be made to misbehave as a starved or broken WCF service does:
//
//	slow-accept   waits a drawn delay before each Accept. With the worker
//	              library, hand-offs wait unacknowledged meanwhile, so a
//	              delay beyond the daemon's dispatch_timeout is the
//	              leaked-handle event.
//	stall         Accept blocks for the window at..at+for.
//	hang          Accept blocks for good from at.
//	crash         the process SIGKILLs itself at at, or after the after=
//	              -th accepted connection; with inflight=D it stops
//	              accepting D before the kill, so hand-offs are in flight.
//	slow-message  each Write on an accepted connection waits a drawn delay
//	              (a reply's processing time).
//	refuse        each accepted connection is closed at once.
//
// Times are relative to start. Each fault's window is logged as events;
// the End event of a per-connection fault says how many connections or
// messages it hit. Close ends a blocked Accept with net.ErrClosed.
type Listener struct {
	net.Listener
	start  time.Time
	log    *Log
	closed context.Context // done once Close is called
	close  context.CancelFunc
	once   sync.Once
	kill   func() // SIGKILL: the process ends here

	slowAccept, slowMessage, refuse []*connFault
	blocks                          []Spec // stall, hang
	crash                           *Spec
	stopAt                          time.Duration // crash: accepting stops here; -1 without a timed crash
	accepted                        atomic.Int64
	dying                           atomic.Bool
	acceptMu                        sync.Mutex // serialises acceptBefore; guards:
	deadlineSet                     bool       // on the wrapped listener

	timers []*time.Timer // armed by newListener only, stopped by Close
}

// connFault is a per-connection fault with its random draws and hits.
type connFault struct {
	spec  Spec
	coin  *Coin
	delay *Delay
	hits  atomic.Int64
}

// NewListener wraps ln with specs, timed from start. It schedules the
// faults' events and, for crash at=, the kill. It fails, leaving ln alone,
// if CheckWorker refuses specs.
func NewListener(ln net.Listener, specs []Spec, start time.Time, log *Log) (*Listener, error) {
	return newListener(ln, specs, start, log, func() { unix.Kill(os.Getpid(), unix.SIGKILL) })
}

// CheckWorker reports whether specs make a set of worker faults one
// Listener can apply: all of Kind Worker, and one crash at most. Check
// before registering, so a bad set never reaches the daemon.
func CheckWorker(specs []Spec) error {
	crashes := 0
	for _, s := range specs {
		if s.Kind != Worker {
			return fmt.Errorf("fault %q is a %s fault, not a worker fault", s, s.Kind)
		}
		if s.Name == "crash" {
			if crashes++; crashes > 1 {
				return fmt.Errorf("fault %q: a worker crashes once; give one crash fault", s)
			}
		}
	}
	return nil
}

// newListener is NewListener with the crash's kill given (tests).
func newListener(ln net.Listener, specs []Spec, start time.Time, log *Log, kill func()) (*Listener, error) {
	if err := CheckWorker(specs); err != nil {
		return nil, err
	}
	l := &Listener{Listener: ln, start: start, log: log, stopAt: -1, kill: kill}
	l.closed, l.close = context.WithCancel(context.Background())
	for _, s := range specs {
		cf := &connFault{spec: s, coin: newCoin(s), delay: newDelay(s)}
		switch s.Name {
		case "slow-accept":
			l.slowAccept = append(l.slowAccept, cf)
		case "slow-message":
			l.slowMessage = append(l.slowMessage, cf)
		case "refuse":
			l.refuse = append(l.refuse, cf)
		case "stall", "hang":
			l.blocks = append(l.blocks, s)
		case "crash":
			l.crash = &s
			if !s.Has("after") {
				l.stopAt = max(s.At-s.Duration("inflight", 0), 0)
			}
		}
	}
	for _, s := range specs {
		l.schedule(s)
	}
	return l, nil
}

// schedule logs the fault's window as it opens and closes, and arms a
// timed crash.
func (l *Listener) schedule(s Spec) {
	at := func(d time.Duration, f func()) {
		l.timers = append(l.timers, time.AfterFunc(time.Until(l.start.Add(d)), f))
	}
	if s.Name == "crash" {
		if s.Has("after") {
			return // logged when the count is reached
		}
		if s.Duration("inflight", 0) > 0 {
			at(l.stopAt, func() { l.log.Add(s, Start, "stopped accepting before the kill") })
		}
		at(s.At, func() { l.die(s, "at "+s.At.String()) })
		return
	}
	at(s.At, func() { l.log.Add(s, Start, "") })
	if end, ok := s.End(); ok {
		at(end, func() { l.log.Add(s, End, l.hits(s)) })
	}
}

// hits describes how many connections or messages a fault hit so far.
func (l *Listener) hits(s Spec) string {
	for _, list := range [][]*connFault{l.slowAccept, l.slowMessage, l.refuse} {
		for _, cf := range list {
			if cf.spec.text == s.text {
				what := "connections"
				if s.Name == "slow-message" {
					what = "messages"
				}
				return fmt.Sprintf("%d %s hit", cf.hits.Load(), what)
			}
		}
	}
	return ""
}

// die logs the crash and kills the process. The event is written before
// the kill, so it is in the events file.
func (l *Listener) die(s Spec, why string) {
	l.dying.Store(true)
	select {
	case <-l.closed.Done():
		return // the worker already stopped: nothing to crash
	default:
	}
	l.log.Add(s, Instant, fmt.Sprintf("SIGKILL (%s, %d connections accepted)", why, l.accepted.Load()))
	l.kill()
}

func (l *Listener) elapsed() time.Duration { return time.Since(l.start) }

// wait sleeps d, or until Close; false after Close.
func (l *Listener) wait(d time.Duration) bool { return SleepUntil(l.closed, time.Now().Add(d)) }

// blocked returns how long Accept must wait before it may accept, and
// whether that is for good.
func (l *Listener) blocked() (time.Duration, bool) {
	now := l.elapsed()
	if l.dying.Load() || (l.stopAt >= 0 && now >= l.stopAt) {
		return 0, true
	}
	var wait time.Duration
	for _, s := range l.blocks {
		if !s.Active(now) {
			continue
		}
		end, ok := s.End()
		if s.Name == "hang" || !ok {
			return 0, true
		}
		wait = max(wait, end-now)
	}
	return wait, false
}

// Accept applies the accept-side faults, then accepts from the wrapped
// listener. After Close it returns net.ErrClosed, also while blocked by a
// fault. Concurrent Accepts are safe: each waits out a blocking window,
// and a slow-accept delay is drawn once per call.
func (l *Listener) Accept() (net.Conn, error) {
	delayed := false
	for {
		wait, forever := l.blocked()
		if forever {
			<-l.closed.Done()
			return nil, net.ErrClosed
		}
		if wait > 0 {
			if !l.wait(wait) {
				return nil, net.ErrClosed
			}
			continue // a later window may begin where this one ends
		}
		if !delayed {
			delayed = true
			if !l.slowDown() {
				return nil, net.ErrClosed
			}
			continue // a window may have opened meanwhile
		}
		c, err := l.acceptBefore()
		if errors.Is(err, errWindow) {
			continue // a window opened: wait it out
		}
		if err != nil {
			return nil, err
		}
		// A refused connection was accepted too: it counts towards a crash.
		n := l.accepted.Add(1)
		if l.crash != nil && l.crash.Has("after") && n >= int64(l.crash.Int("after", 0)) && !l.dying.Swap(true) {
			l.crashAfterCount(c)
			return nil, net.ErrClosed
		}
		if l.refused() {
			c.Close()
			continue
		}
		if len(l.slowMessage) > 0 {
			c = &slowConn{Conn: c, l: l}
		}
		return c, nil
	}
}

// slowDown waits the slow-accept delays in effect; false after Close.
func (l *Listener) slowDown() bool {
	now := l.elapsed()
	for _, cf := range l.slowAccept {
		if cf.spec.Active(now) && cf.coin.Hit() {
			cf.hits.Add(1)
			if !l.wait(cf.delay.Next()) {
				return false
			}
		}
	}
	return true
}

// errWindow is acceptBefore's: a blocking fault's window is open.
var errWindow = errors.New("fault window open")

// acceptBefore accepts from the wrapped listener until the next blocking
// window (stall, hang, crash's stop) opens. A listener with an Accept
// deadline (net.TCPListener, the worker library's) is woken then, so a
// stall stops even an Accept already waiting; on another listener an
// Accept waiting when a window opens takes one more connection.
func (l *Listener) acceptBefore() (net.Conn, error) {
	// One caller at a time sets the wrapped listener's deadline and waits
	// under it, so concurrent Accepts do not cut each other's waits short;
	// a caller that waited for the lock looks again for a window that
	// opened meanwhile (or a crash begun).
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	if wait, forever := l.blocked(); forever || wait > 0 {
		return nil, errWindow
	}
	dl, ok := l.Listener.(interface{ SetDeadline(time.Time) error })
	next, has := l.nextBlock(l.elapsed())
	if !ok || (!has && !l.deadlineSet) {
		return l.Listener.Accept()
	}
	var at time.Time
	if has {
		at = l.start.Add(next)
	}
	dl.SetDeadline(at)
	l.deadlineSet = has
	c, err := l.Listener.Accept()
	if err != nil && has && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(at) {
		return nil, errWindow
	}
	return c, err
}

// nextBlock is when the next blocking window after now opens.
func (l *Listener) nextBlock(now time.Duration) (time.Duration, bool) {
	next, has := time.Duration(0), false
	consider := func(at time.Duration) {
		if at > now && (!has || at < next) {
			next, has = at, true
		}
	}
	for _, s := range l.blocks {
		consider(s.At)
	}
	if l.stopAt >= 0 {
		consider(l.stopAt)
	}
	return next, has
}

// refused tosses the refuse faults in effect for one connection.
func (l *Listener) refused() bool {
	now := l.elapsed()
	for _, cf := range l.refuse {
		if cf.spec.Active(now) && cf.coin.Hit() {
			cf.hits.Add(1)
			return true
		}
	}
	return false
}

// crashAfterCount kills the process once the after= -th connection is
// accepted: it holds that connection (in flight from its client's view),
// stops accepting for inflight= so hand-offs pile up unacknowledged, then
// dies.
func (l *Listener) crashAfterCount(c net.Conn) {
	s := *l.crash
	if d := s.Duration("inflight", 0); d > 0 {
		l.log.Add(s, Start, "stopped accepting before the kill")
		l.wait(d)
	}
	l.die(s, fmt.Sprintf("after %d connections", s.Int("after", 0)))
	c.Close() // reached only if the worker stopped first
}

// Close closes the wrapped listener, ends blocked Accepts and logs the
// end of the faults still in effect.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.close()
		for _, t := range l.timers {
			t.Stop()
		}
		now := l.elapsed()
		for _, list := range [][]*connFault{l.slowAccept, l.slowMessage, l.refuse} {
			for _, cf := range list {
				if cf.spec.Active(now) {
					l.log.Add(cf.spec, End, "worker stopped; "+l.hits(cf.spec))
				}
			}
		}
	})
	return l.Listener.Close()
}

// slowConn delays each Write by the slow-message faults in effect.
type slowConn struct {
	net.Conn
	l *Listener
}

// CloseWrite passes through to the wrapped conn (a TCP or worker conn has
// it), so a service that half-closes after a fault record still drains.
func (c *slowConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *slowConn) Write(p []byte) (int, error) {
	now := c.l.elapsed()
	for _, cf := range c.l.slowMessage {
		if cf.spec.Active(now) && cf.coin.Hit() {
			cf.hits.Add(1)
			if !c.l.wait(cf.delay.Next()) {
				return 0, net.ErrClosed
			}
		}
	}
	return c.Conn.Write(p)
}
