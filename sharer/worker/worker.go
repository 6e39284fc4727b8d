// Package worker lets a Go service take connections from the port-sharing
// daemon through a plain net.Listener:
//
//	ln, err := worker.Listen(ctx, []string{"http://+:8080/api/"}, worker.Options{Name: "api"})
//	if err != nil { … }
//	http.Serve(ln, handler)
//
// Each accepted connection replays the bytes the daemon already read before
// reading the socket, so the service sees the whole stream. Accept is the
// acknowledgement the daemon waits for: a service that does not call Accept
// in time causes the daemon's dispatch timeout. If the daemon restarts, the
// listener registers again by itself and Accept keeps working.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
)

// Options configure a Listener. The zero value works.
type Options struct {
	// ControlSocket is the daemon's socket; default config.DefaultControlSocket().
	ControlSocket string
	// Name identifies the service. Listeners with the same name and uid
	// share their routes (a worker pool); "" never shares.
	Name string
	// MaxInflight is how many hand-offs the daemon may send before this
	// listener's Accept takes them (its credit). Default 1. The compat
	// policy always grants 1.
	MaxInflight int
	// Logger receives reconnect notices; default slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds each registration attempt. Default 5s.
	DialTimeout time.Duration
}

// ErrNoDaemon wraps the error of a first registration that found no daemon.
var ErrNoDaemon = control.ErrNoDaemon

// RegistrationError is the daemon's refusal (conflict, denied, bad route, …).
type RegistrationError = control.Error

// Listener is a net.Listener fed by the daemon. Accept reads the control
// socket itself — no goroutine sits between the daemon and the caller — so
// a hand-off costs one wake-up of the accepting goroutine, and hand-offs a
// slow service has not accepted wait in the socket, bounded by its credit.
type Listener struct {
	routes []string
	opts   Options
	log    *slog.Logger
	closed context.Context // done once Close is called; bounds re-registration
	close  context.CancelFunc
	once   sync.Once

	acceptMu sync.Mutex    // one Accept reads the control socket at a time; guards:
	since    time.Time     // when ctl registered
	wait     time.Duration // next re-registration back-off
	fatal    error         // a refused re-registration ends Accept for good

	mu         sync.Mutex    // guards ctl and registered, which Close and Registered read too
	ctl        *control.Conn // nil while re-registering
	registered control.Registered
	deadline   time.Time // of Accept (SetDeadline)
}

// Listen registers routes with the daemon and returns the listener. It
// fails with an error wrapping ErrNoDaemon when no daemon answers at the
// control socket, or with a *RegistrationError when the daemon refuses.
// ctx bounds only the first registration.
func Listen(ctx context.Context, routes []string, opts Options) (*Listener, error) {
	if opts.ControlSocket == "" {
		opts.ControlSocket = config.DefaultControlSocket()
	}
	opts.MaxInflight = max(opts.MaxInflight, 1)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	l := &Listener{routes: routes, opts: opts, log: opts.Logger}
	l.closed, l.close = context.WithCancel(context.Background())
	ctl, reg, err := l.register(ctx)
	if err != nil {
		return nil, err
	}
	l.ctl, l.registered, l.since = ctl, reg, time.Now()
	return l, nil
}

// register dials the daemon and registers the routes.
func (l *Listener) register(ctx context.Context) (*control.Conn, control.Registered, error) {
	var reg control.Registered
	dctx, cancel := context.WithTimeout(ctx, l.opts.DialTimeout)
	defer cancel()
	ctl, err := control.DialContext(dctx, l.opts.ControlSocket)
	if err != nil {
		return nil, reg, err
	}
	// Routes and connections go only to a daemon run by root or by us.
	if cred, err := control.PeerCred(ctl.UnixConn()); err != nil || (cred.Uid != 0 && int(cred.Uid) != os.Geteuid()) {
		ctl.Close()
		if err == nil {
			err = fmt.Errorf("it runs as uid %d, neither root nor us", cred.Uid)
		}
		return nil, reg, fmt.Errorf("refusing the process serving %s: %w", l.opts.ControlSocket, err)
	}
	deadline, _ := dctx.Deadline()
	ctl.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { ctl.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*control.Conn, control.Registered, error) {
		ctl.Close()
		return nil, reg, err
	}
	req := control.Register{Name: l.opts.Name, Routes: l.routes, MaxInflight: l.opts.MaxInflight, PID: os.Getpid()}
	if err := ctl.Send(control.TypeRegister, req, nil, -1, 0); err != nil {
		return fail(fmt.Errorf("registering with %s: %w", l.opts.ControlSocket, err))
	}
	m, err := ctl.Recv()
	if err != nil {
		return fail(fmt.Errorf("registering with %s: %w", l.opts.ControlSocket, err))
	}
	m.CloseFD()
	switch m.Type {
	case control.TypeRegistered:
		if err := m.Unmarshal(&reg); err != nil {
			return fail(err)
		}
	case control.TypeError:
		var e control.Error
		if err := m.Unmarshal(&e); err != nil {
			return fail(err)
		}
		return fail(&e)
	default:
		return fail(fmt.Errorf("registering with %s: unexpected %s", l.opts.ControlSocket, m.Type))
	}
	if !stop() {
		return fail(fmt.Errorf("registering with %s: %w", l.opts.ControlSocket, dctx.Err()))
	}
	ctl.SetDeadline(time.Time{})
	return ctl, reg, nil
}

// reconnect registers again after the daemon went away, with back-off,
// until it succeeds, the listener closes (net.ErrClosed), or the daemon
// refuses for good (the refusal is returned, then and on every later
// Accept). The back-off starts again only after a registration that lasted.
func (l *Listener) reconnect() (*control.Conn, error) {
	if l.fatal != nil {
		return nil, l.fatal
	}
	wait := 50 * time.Millisecond
	if time.Since(l.since) < 5*time.Second && l.wait > 0 {
		wait = l.wait
	}
	for {
		select {
		case <-l.closed.Done():
			return nil, net.ErrClosed
		case <-time.After(wait):
		}
		ctl, reg, err := l.register(l.closed) // Close cancels it
		var re *control.Error
		switch {
		case err == nil:
			l.mu.Lock()
			select {
			case <-l.closed.Done(): // closed while registering
				l.mu.Unlock()
				ctl.Close()
				return nil, net.ErrClosed
			default:
			}
			l.ctl, l.registered = ctl, reg
			ctl.SetReadDeadline(l.deadline)
			l.mu.Unlock()
			l.since, l.wait = time.Now(), min(2*wait, 2*time.Second)
			l.log.Info("re-registered with the port-sharing daemon", "routes", reg.Routes)
			return ctl, nil
		case errors.As(err, &re) && re.Code == control.CodeBackoff:
			wait = time.Duration(re.RetryAfterMS) * time.Millisecond
		case errors.As(err, &re) && re.Code != control.CodeShutdown:
			l.fatal = err
			return nil, err
		default:
			wait = min(2*wait, 2*time.Second)
		}
	}
}

// Accept waits for the next hand-off, acknowledges it to the daemon and
// returns it as a *Conn. A hand-off found past its deadline (the daemon has
// already given up on it) is closed and reported as expired instead. If the
// daemon goes away, Accept registers again and keeps waiting. Accept
// returns net.ErrClosed after Close, and the daemon's refusal if a
// re-registration is refused.
func (l *Listener) Accept() (net.Conn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	for {
		l.mu.Lock()
		ctl := l.ctl
		l.mu.Unlock()
		if ctl == nil {
			var err error
			if ctl, err = l.reconnect(); err != nil {
				return nil, err
			}
		}
		m, err := ctl.Recv()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if l.pastDeadline() {
				return nil, &net.OpError{Op: "accept", Net: "portshare", Addr: l.Addr(), Err: err}
			}
			continue // the deadline moved while Recv waited
		}
		if errors.Is(err, control.ErrRightsTruncated) {
			l.refuse(ctl, &m, "descriptor lost (MSG_CTRUNC): is the worker out of file descriptors?")
			continue
		}
		if err == nil && m.Type == control.TypeHandoff {
			c, ackErr := l.take(ctl, &m)
			if c != nil {
				return c, nil
			}
			// The daemon gone (EPIPE): read on for what it said last (an
			// eviction) and its end. Otherwise it stopped reading: start
			// over rather than leave the hand-off unanswered.
			if ackErr != nil && !errors.Is(ackErr, unix.EPIPE) {
				err = ackErr
			}
		}
		if err != nil {
			select {
			case <-l.closed.Done():
				return nil, net.ErrClosed
			default:
			}
			l.log.Warn("port-sharing daemon connection lost; re-registering", "socket", l.opts.ControlSocket, "err", err)
			l.mu.Lock()
			if l.ctl == ctl {
				l.ctl = nil
			}
			l.mu.Unlock()
			ctl.Close()
			continue
		}
		switch m.Type {
		case control.TypeHandoff: // taken above
		case control.TypeEvicted:
			var e control.Evicted
			m.Unmarshal(&e)
			l.log.Error("evicted by the port-sharing daemon", "reason", e.Reason, "retry_after_ms", e.RetryAfterMS)
		default:
			m.CloseFD()
		}
	}
}

// SetDeadline sets the deadline of Accept, as net.TCPListener's does, also
// for an Accept already waiting: past it, Accept returns a net.Error whose
// Timeout is true (wrapping os.ErrDeadlineExceeded) and hand-offs stay
// queued, unacknowledged, for a later Accept. The zero time means none. A
// deadline set while re-registering takes effect once registered.
func (l *Listener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadline = t
	if l.ctl != nil {
		return l.ctl.SetReadDeadline(t)
	}
	return nil
}

func (l *Listener) pastDeadline() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.deadline.IsZero() && !time.Now().Before(l.deadline)
}

// refuse tells the daemon a hand-off whose descriptor never arrived cannot
// be taken, so it answers the client at once instead of waiting for the
// dispatch timeout.
func (l *Listener) refuse(ctl *control.Conn, m *control.Message, why string) {
	var h control.Handoff
	if m.Type != control.TypeHandoff || m.Unmarshal(&h) != nil {
		return
	}
	l.log.Error("hand-off refused", "id", h.ID, "why", why)
	ctl.Send(control.TypeAck, control.Ack{ID: h.ID, Refused: why}, nil, -1, time.Second)
}

// take turns a hand-off into a Conn and acknowledges it. It returns nil
// for a hand-off that expired or was unusable (acknowledged as such, so the
// daemon stops waiting), and an error when the acknowledgement could not be
// sent: the control connection is then no good, and the connection is
// closed rather than served, since the daemon may give it to another
// worker.
func (l *Listener) take(ctl *control.Conn, m *control.Message) (*Conn, error) {
	var h control.Handoff
	if err := m.Unmarshal(&h); err != nil {
		m.CloseFD()
		l.log.Warn("bad hand-off from daemon", "err", err)
		return nil, nil
	}
	reply := func(a control.Ack) error { return ctl.Send(control.TypeAck, a, nil, -1, time.Second) }
	if m.FD < 0 {
		return nil, reply(control.Ack{ID: h.ID, Refused: "hand-off without a descriptor"})
	}
	if time.Now().UnixNano() > h.Deadline {
		m.CloseFD()
		return nil, reply(control.Ack{ID: h.ID, Expired: true})
	}
	c, err := newConn(m.FD, &h, m.Payload)
	m.FD = -1 // newConn owns it now, on every path
	if err != nil {
		return nil, reply(control.Ack{ID: h.ID, Refused: err.Error()})
	}
	if err := reply(control.Ack{ID: h.ID}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close unregisters by closing the control connection. Hand-offs not yet
// accepted are closed with it; the daemon re-queues them under reclaim.
// A blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.close()
		if l.ctl != nil {
			l.ctl.Close()
		}
		l.mu.Unlock()
	})
	return nil
}

// Addr returns the first route, as an address of network "portshare".
func (l *Listener) Addr() net.Addr { return Addr(l.routes[0]) }

// Registered returns what the daemon granted at the latest registration.
func (l *Listener) Registered() control.Registered {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.registered
}

// Addr is a route URI used as a net.Addr.
type Addr string

func (a Addr) Network() string { return "portshare" }
func (a Addr) String() string  { return string(a) }
