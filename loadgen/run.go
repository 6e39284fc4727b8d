package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/faults"
)

// Options describe a run. Exactly one of Pacer (open model) and
// Concurrency (closed model) is set, and at least one of Duration and
// Count bounds the run.
type Options struct {
	Target Target

	// Pacer paces arrivals in the open model: sessions start at the
	// Pacer's times whatever the responses do.
	Pacer Pacer
	// Concurrency is the closed model: this many clients, each starting
	// its next session when the last one ended.
	Concurrency int

	Duration time.Duration // stop sending after this long
	Count    int64         // stop after this many sessions

	Messages    int    // net.tcp: round trips per session (default 1)
	MessageSize int    // net.tcp: bytes per message (default 64); http: request body size with a body method
	Method      string // http: request method (default GET)
	// NewConnections (http) makes every session a connection of its own,
	// sending Connection: close, instead of reusing idle ones: against a
	// shared port, one hand-off per session.
	NewConnections bool

	// Connection storm (tcp://): what each connection does after connecting.
	Send      []byte        // bytes to send, if any, after SendDelay
	SendDelay time.Duration //
	Hold      time.Duration // keep the connection open this long, then close it

	ConnectTimeout time.Duration // connect(2), default 3s: SYNs dropped by a full backlog are retried at 1s and 3s
	Timeout        time.Duration // a whole session, default 10s

	// MaxInFlight caps sessions in flight so that a dead target cannot
	// exhaust the client's descriptors. Default: RLIMIT_NOFILE less 64.
	// In the open model an arrival that finds the cap full waits for a
	// slot and is sent late.
	MaxInFlight int
	// LateAfter is how far behind its intended time a send may start before
	// it counts as late (default 1ms).
	LateAfter time.Duration
	// Grace is how long sessions in flight may go on after ctx is done
	// before they are cut short as aborted (default 1s).
	Grace time.Duration

	// ClientFaults make a share of the sessions misbehaving clients (see
	// ClientFault); the rest are normal. Closed-model HTTP (hey) and some
	// protocol and fault pairs refuse them (an OptionsError says which).
	ClientFaults []ClientFault

	// Progress, if set, is called about once a second from one goroutine.
	Progress func(Snapshot)
}

// OptionsError is Run's error for options that describe no valid run.
type OptionsError struct{ error }

func (e OptionsError) Unwrap() error { return e.error }

func optionsErrorf(format string, a ...any) error {
	return OptionsError{fmt.Errorf(format, a...)}
}

// Limits on message sizes. A net.tcp reply is the message plus the
// reference worker's name, and WCF's default maxReceivedMessageSize is
// 64 KiB; an HTTP body is held in memory once.
const (
	MaxNetTCPMessage = 60 << 10
	MaxHTTPBody      = 16 << 20
)

func (o *Options) defaults() error {
	if (o.Pacer == nil) == (o.Concurrency <= 0) {
		return optionsErrorf("give either a rate (open model) or a concurrency (closed model)")
	}
	if o.Duration <= 0 && o.Count <= 0 {
		return optionsErrorf("give a duration or a count: a load run must stop by itself")
	}
	for name, v := range map[string]int64{
		"duration": int64(o.Duration), "count": o.Count, "messages": int64(o.Messages), "message size": int64(o.MessageSize),
		"hold": int64(o.Hold), "send delay": int64(o.SendDelay), "connect timeout": int64(o.ConnectTimeout),
		"timeout": int64(o.Timeout), "max in flight": int64(o.MaxInFlight), "late-after": int64(o.LateAfter), "grace": int64(o.Grace),
	} {
		if v < 0 {
			return optionsErrorf("the %s cannot be negative", name)
		}
	}
	switch {
	case o.Target.Protocol == NetTCP && o.MessageSize > MaxNetTCPMessage:
		return optionsErrorf("net.tcp messages are limited to %d bytes (replies add the worker's name; WCF's default maxReceivedMessageSize is 64 KiB)", MaxNetTCPMessage)
	case o.MessageSize > MaxHTTPBody:
		return optionsErrorf("the message size is limited to %d bytes", MaxHTTPBody)
	}
	if o.NewConnections && o.Target.Protocol != HTTP {
		return optionsErrorf("new connections per session are for http targets: net.tcp sessions and storms always connect anew")
	}
	if o.Method != "" && !validMethod(o.Method) {
		return optionsErrorf("method %q is not an HTTP method token", o.Method)
	}
	if o.Target.Protocol == HTTP && o.Pacer == nil {
		// Addr is not the URL's own when the caller connects elsewhere.
		if own, err := ParseTarget(o.Target.URL); err == nil && own.Addr != o.Target.Addr {
			return optionsErrorf("connecting to %s instead of the target's %s (--connect) is for the open model (--rate): closed-model http runs on hey, which connects to the target's own host", o.Target.Addr, own.Addr)
		}
	}
	if o.Messages == 0 {
		o.Messages = 1
	}
	if o.MessageSize == 0 && o.Target.Protocol == NetTCP {
		o.MessageSize = 64
	}
	if o.Method == "" {
		o.Method = "GET"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 3 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.LateAfter == 0 {
		o.LateAfter = time.Millisecond
	}
	if o.Grace == 0 {
		o.Grace = time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 1024
		var lim unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur > 128 {
			o.MaxInFlight = int(min(lim.Cur-64, 1<<20))
		}
	}
	if o.Concurrency > o.MaxInFlight {
		return optionsErrorf("concurrency %d is above the cap of %d sessions in flight (raise the open-files limit, ulimit -n)", o.Concurrency, o.MaxInFlight)
	}
	return o.checkClientFaults()
}

// validMethod reports whether m is an HTTP token of letters, as methods
// are.
func validMethod(m string) bool {
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return m != ""
}

// A Session runs one client session of a protocol against the target. It
// reports its phases to ph and returns its outcome class and, for a
// failure, the error behind it. It gives up when ctx is done.
type Session interface {
	Run(ctx context.Context, ph *Phases) (outcome string, err error)
}

// Run runs the load that o describes and returns what it measured.
// Whatever the target does is in the Result; errors are bad options
// (OptionsError) or, rarely, a failure of the engine itself. When ctx is
// done Run stops sending, gives the sessions in flight Options.Grace to
// end, aborts the rest, and still returns the Result (with Stopped set).
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	before, _ := faults.ReadTCPExt(0)
	res, err := runLoad(ctx, o)
	if res != nil {
		after, _ := faults.ReadTCPExt(0)
		res.TCPExt = kernelDelta(before, after)
	}
	return res, err
}

func runLoad(ctx context.Context, o Options) (*Result, error) {
	if o.Target.Protocol == HTTP && o.Pacer == nil {
		return runHey(ctx, o)
	}
	sess, closeSess, err := newSession(o)
	if err != nil {
		return nil, err
	}
	defer closeSess()
	e := newEngine(ctx, o, "portshare")
	defer e.close()
	if o.Pacer != nil {
		e.open(sess)
	} else {
		e.closed(sess)
	}
	return e.finish(), nil
}

func newSession(o Options) (Session, func(), error) {
	switch o.Target.Protocol {
	case NetTCP:
		return newNetTCPSession(o), func() {}, nil
	case HTTP:
		s := newHTTPSession(o)
		return s, s.close, nil
	case TCP:
		return newStormSession(o), func() {}, nil
	}
	return nil, nil, optionsErrorf("target %q: unknown protocol %q", o.Target.URI, o.Target.Protocol)
}

// engine is one run in progress.
type engine struct {
	o       Options
	ctx     context.Context // the caller's: done means stop sending
	start   time.Time
	rec     *recorder
	name    string
	sendEnd time.Time // when the last session was started
	unsent  int64
	stopped string
	// cut says how the send phase ended early: interrupted by ctx, or
	// the send window closed on arrivals still due (the rest are unsent).
	cut int

	plan *faultPlan // client faults; nil without

	sessCtx    context.Context // the sessions': cancelled Grace after ctx
	cancelSess context.CancelFunc
	wg         sync.WaitGroup
	tickDone   chan struct{}
	tickWG     sync.WaitGroup
}

func newEngine(ctx context.Context, o Options, name string) *engine {
	e := &engine{o: o, ctx: ctx, start: time.Now(), name: name, tickDone: make(chan struct{}), plan: newFaultPlan(o)}
	e.rec = newRecorder(e.start)
	e.rec.setPlan(e.plan)
	e.sessCtx, e.cancelSess = context.WithCancel(context.WithoutCancel(ctx))
	e.tickWG.Go(e.tick)
	return e
}

// tick stamps the time series' in-flight counts and reports progress.
func (e *engine) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			snap := e.rec.Tick(now)
			if e.o.Progress != nil {
				e.o.Progress(snap)
			}
		case <-e.tickDone:
			return
		}
	}
}

// sendDeadline is the channel that closes when the send window is over.
func (e *engine) sendDeadline() (<-chan time.Time, func()) {
	if e.o.Duration <= 0 {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(e.start.Add(e.o.Duration)))
	return t.C, func() { t.Stop() }
}

// launch runs one session in its own goroutine; intended is when it was
// meant to start, k and n its client fault and its number among the
// fault's sessions (k = -1: none, a session of sess). release is called
// when it ends.
func (e *engine) launch(sess Session, k int, n int64, intended time.Time, release func()) {
	e.wg.Go(func() {
		defer release()
		e.runOne(sess, k, n, intended)
	})
}

// runOne runs one session, the n-th of client fault k or, if k < 0, a
// normal one of sess, and records it.
func (e *engine) runOne(sess Session, k int, n int64, intended time.Time) {
	e.rec.inFlight.Add(1)
	defer e.rec.inFlight.Add(-1)
	ph := Phases{rec: e.rec}
	var outcome string
	var err error
	if k >= 0 {
		ph.rec = nil // a faulty session's phases are not the normal sessions'
		outcome, err = e.plan.clients[k].run(e.sessCtx, &ph, n)
	} else {
		outcome, err = sess.Run(e.sessCtx, &ph)
	}
	if outcome != OK && e.sessCtx.Err() != nil {
		outcome = Aborted
	}
	end := time.Now()
	if k >= 0 {
		e.rec.FinishedFault(k, end.Sub(intended), outcome, err)
		return
	}
	e.rec.Finished(end, end.Sub(intended), outcome, &ph, err)
}

const (
	cutNone = iota
	cutInterrupted
	cutWindow
)

// interrupted records that ctx ended the send phase.
func (e *engine) interrupted() {
	e.stopped = "interrupted"
	e.cut = cutInterrupted
	e.sendEnd = time.Now()
}

// windowClosed records that the send window closed on the n-th arrival
// (due at offset at) and those after it.
func (e *engine) windowClosed(n int64, at time.Duration, why string) {
	e.countUnsent(n, at)
	e.stopped = why
	e.cut = cutWindow
}

// open is the open model: arrivals at the Pacer's times. An arrival that
// finds MaxInFlight sessions in flight waits for one to end; either way
// its latency counts from its intended time.
func (e *engine) open(sess Session) {
	slots := make(chan struct{}, e.o.MaxInFlight)
	release := func() { <-slots }
	deadline, stopDeadline := e.sendDeadline()
	defer stopDeadline()
	sleep := newSleeper()
	defer sleep.close()
	for n := int64(0); e.o.Count == 0 || n < e.o.Count; n++ {
		at := e.o.Pacer.Next()
		if e.o.Duration > 0 && at >= e.o.Duration {
			break
		}
		intended := e.start.Add(at)
		if !sleep.until(e.ctx, intended) {
			e.interrupted()
			return
		}
		if now := time.Now(); e.o.Duration > 0 && now.Sub(e.start) >= e.o.Duration && now.Sub(intended) > e.o.LateAfter {
			// The send window has closed on arrivals still due in it.
			e.windowClosed(n, at, "the generator fell behind its schedule")
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			select {
			case slots <- struct{}{}:
			case <-deadline:
				e.windowClosed(n, at, fmt.Sprintf("%d sessions in flight (the cap) until the end of the run", e.o.MaxInFlight))
				return
			case <-e.ctx.Done():
				e.interrupted()
				return
			}
		}
		now := time.Now()
		k, nth := e.rec.Start(at, now, now.Sub(intended) > e.o.LateAfter)
		e.sendEnd = now
		e.launch(sess, k, nth, intended, release)
	}
}

// countUnsent counts the arrivals from the n-th (due at offset at) to the
// end of the run that were never sent.
func (e *engine) countUnsent(n int64, at time.Duration) {
	due := int64(-1)
	if p, ok := e.o.Pacer.(interface{ due(time.Duration) int64 }); ok {
		due = p.due(e.o.Duration)
	} else {
		for due = n; at < e.o.Duration; due++ {
			at = e.o.Pacer.Next()
		}
	}
	if e.o.Count > 0 {
		due = min(due, e.o.Count)
	}
	e.unsent = max(due-n, 0)
}

// closed is the closed model: Concurrency clients, each starting a session
// as soon as its last one ended. Latency counts from each session's start.
// The clients are the engine's goroutines, so finish waits for them (and
// their sessions in flight) with the same grace as the open model's.
func (e *engine) closed(sess Session) {
	if e.ctx.Err() != nil {
		e.interrupted()
		return
	}
	var issued atomic.Int64
	deadline, stopDeadline := e.sendDeadline()
	defer stopDeadline()
	stop := make(chan struct{})
	for range e.o.Concurrency {
		e.wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if e.o.Count > 0 && issued.Add(1) > e.o.Count {
					return
				}
				now := time.Now()
				k, nth := e.rec.Start(now.Sub(e.start), now, false)
				e.runOne(sess, k, nth, now)
			}
		})
	}
	finished := make(chan struct{})
	go func() { e.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		e.sendEnd = time.Now()
	case <-deadline:
		e.sendEnd = time.Now()
	case <-e.ctx.Done():
		e.interrupted()
	}
	close(stop)
}

// waitInFlight waits for the sessions in flight; once ctx is done they get
// Grace before they are aborted.
func (e *engine) waitInFlight() {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-e.ctx.Done():
		if e.stopped == "" {
			e.stopped = "interrupted"
		}
	}
	grace := time.NewTimer(e.o.Grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		e.cancelSess()
		<-done
	}
}

// finish waits for the sessions in flight and builds the Result.
func (e *engine) finish() *Result {
	e.waitInFlight()
	end := time.Now()
	res := e.rec.result(end)
	o := e.o
	res.Version = FormatVersion
	res.Target, res.Protocol, res.Engine = o.Target.URI, o.Target.Protocol, e.name
	res.Started = e.start
	res.Duration = Seconds(end.Sub(e.start).Seconds())
	res.MaxInFlight = o.MaxInFlight
	if o.Target.Protocol == NetTCP {
		res.Messages, res.MessageSize = o.Messages, o.MessageSize
	}
	res.Unsent = e.unsent
	res.LateSends += e.unsent
	res.Stopped = e.stopped
	window := max(e.sendEnd.Sub(e.start), 0)
	if o.Duration > 0 {
		window = min(window, o.Duration)
	}
	res.FaultEvents = e.plan.events(e.start, window) // before the open model's window stretches to its end
	if o.Pacer != nil {
		res.Model, res.Arrival = "open", o.Pacer.String()
		switch {
		case e.cut == cutInterrupted:
			// The window ends at the interruption.
		case e.cut == cutWindow:
			window = o.Duration
		case o.Count > 0 && res.Attempts+res.Unsent >= o.Count:
			// Ended by the count: N sends at rate R take N/R, so the window
			// ends when the next arrival would have been due.
			window = max(window, o.Pacer.Next())
			if o.Duration > 0 {
				window = min(window, o.Duration)
			}
		default:
			window = o.Duration
		}
		res.TargetRate = o.Pacer.Rate(0)
		if r, ok := o.Pacer.(*Ramp); ok {
			res.TargetRate = r.meanRate(window)
		}
	} else {
		res.Model, res.Concurrency = "closed", o.Concurrency
	}
	res.Window = Seconds(window.Seconds())
	if e.plan != nil {
		res.ClientFaults = map[string]*FaultResult{}
		for k, fr := range e.rec.faultResults() {
			f := e.plan.clients[k]
			fr.Name, fr.Ratio = f.Spec.Name, f.Ratio
			res.ClientFaults[f.key] = fr
		}
	}
	if window > 0 {
		res.AchievedRate = float64(res.Attempts) / window.Seconds()
	}
	return res
}

func (e *engine) close() {
	e.cancelSess()
	close(e.tickDone)
	e.tickWG.Wait()
}
