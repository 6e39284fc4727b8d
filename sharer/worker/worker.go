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
var ErrNoDaemon = errors.New("no port-sharing daemon")

// RegistrationError is the daemon's refusal (conflict, denied, bad route, …).
type RegistrationError = control.Error

// Listener is a net.Listener fed by the daemon.
type Listener struct {
	routes []string
	opts   Options
	log    *slog.Logger

	handoffs chan *handoff
	closed   chan struct{}
	fatal    chan error // a refusal after reconnecting ends Accept
	once     sync.Once
	wg       sync.WaitGroup

	mu         sync.Mutex
	ctl        *control.Conn
	gen        int // incremented per registration: acks go only to the daemon that sent
	registered control.Registered
}

type handoff struct {
	hdr control.Handoff
	pre []byte
	fd  int
	ctl *control.Conn
	gen int
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
	l := &Listener{
		routes: routes, opts: opts, log: opts.Logger,
		handoffs: make(chan *handoff, opts.MaxInflight+1),
		closed:   make(chan struct{}),
		fatal:    make(chan error, 1),
	}
	ctl, reg, err := l.register(ctx)
	if err != nil {
		return nil, err
	}
	l.ctl, l.registered, l.gen = ctl, reg, 1
	l.wg.Go(func() { l.run(ctl, 1) })
	return l, nil
}

// register dials the daemon and registers the routes.
func (l *Listener) register(ctx context.Context) (*control.Conn, control.Registered, error) {
	var reg control.Registered
	dctx, cancel := context.WithTimeout(ctx, l.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "unixpacket", l.opts.ControlSocket)
	if err != nil {
		return nil, reg, fmt.Errorf("%w at %s: %v (is 'portshare serve' running?)", ErrNoDaemon, l.opts.ControlSocket, err)
	}
	ctl, err := control.NewConn(c.(*net.UnixConn))
	if err != nil {
		c.Close()
		return nil, reg, err
	}
	deadline, _ := dctx.Deadline()
	ctl.SetDeadline(deadline)
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
	ctl.SetDeadline(time.Time{})
	return ctl, reg, nil
}

// run receives hand-offs until the control connection ends, then
// re-registers with back-off until it succeeds or the listener closes.
func (l *Listener) run(ctl *control.Conn, gen int) {
	for {
		l.receive(ctl, gen)
		ctl.Close()
		var ok bool
		if ctl, gen, ok = l.reconnect(); !ok {
			return
		}
	}
}

func (l *Listener) receive(ctl *control.Conn, gen int) {
	for {
		m, err := ctl.Recv()
		if err != nil {
			select {
			case <-l.closed:
			default:
				l.log.Warn("port-sharing daemon connection lost; re-registering", "socket", l.opts.ControlSocket, "err", err)
			}
			return
		}
		switch m.Type {
		case control.TypeHandoff:
			h := &handoff{fd: m.FD, ctl: ctl, gen: gen, pre: append([]byte(nil), m.Payload...)}
			if err := m.Unmarshal(&h.hdr); err != nil || h.fd < 0 {
				m.CloseFD()
				l.log.Warn("bad hand-off from daemon", "err", err)
				continue
			}
			select {
			case l.handoffs <- h:
			default: // the daemon exceeded our credit: refuse rather than block
				unix.Close(h.fd)
				ctl.Send(control.TypeAck, control.Ack{ID: h.hdr.ID, Expired: true}, nil, -1, time.Second)
			}
		case control.TypeEvicted:
			var e control.Evicted
			m.Unmarshal(&e)
			l.log.Error("evicted by the port-sharing daemon", "reason", e.Reason, "retry_after_ms", e.RetryAfterMS)
		default:
			m.CloseFD()
		}
	}
}

func (l *Listener) reconnect() (*control.Conn, int, bool) {
	wait := 50 * time.Millisecond
	for {
		select {
		case <-l.closed:
			return nil, 0, false
		case <-time.After(wait):
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-l.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		ctl, reg, err := l.register(ctx)
		cancel()
		var re *control.Error
		switch {
		case err == nil:
			l.mu.Lock()
			l.gen++
			gen := l.gen
			l.ctl, l.registered = ctl, reg
			l.mu.Unlock()
			select {
			case <-l.closed: // closed while registering
				ctl.Close()
				return nil, 0, false
			default:
			}
			l.log.Info("re-registered with the port-sharing daemon", "routes", reg.Routes)
			return ctl, gen, true
		case errors.As(err, &re) && re.Code == control.CodeBackoff:
			wait = time.Duration(re.RetryAfterMS) * time.Millisecond
		case errors.As(err, &re) && re.Code != control.CodeShutdown:
			select {
			case l.fatal <- err:
			default:
			}
			return nil, 0, false
		default:
			wait = min(2*wait, 2*time.Second)
		}
	}
}

// Accept waits for the next hand-off, acknowledges it to the daemon and
// returns it as a *Conn. A hand-off found past its deadline (the daemon has
// already given up on it) is closed and reported as expired instead.
// Accept returns net.ErrClosed after Close, and the daemon's refusal if a
// re-registration was refused.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		case err := <-l.fatal:
			return nil, err
		case h := <-l.handoffs:
			if time.Now().UnixNano() > h.hdr.Deadline {
				unix.Close(h.fd)
				l.ack(h, true)
				continue
			}
			c, err := newConn(h)
			if err != nil {
				l.ack(h, true)
				continue
			}
			l.ack(h, false)
			return c, nil
		}
	}
}

func (l *Listener) ack(h *handoff, expired bool) {
	l.mu.Lock()
	current := h.gen == l.gen
	l.mu.Unlock()
	if current {
		h.ctl.Send(control.TypeAck, control.Ack{ID: h.hdr.ID, Expired: expired}, nil, -1, time.Second)
	}
}

// Close unregisters (by closing the control connection) and closes the
// hand-offs not yet accepted; the daemon re-queues those under reclaim.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.mu.Lock()
		if l.ctl != nil {
			l.ctl.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		for {
			select {
			case h := <-l.handoffs:
				unix.Close(h.fd)
			default:
				return
			}
		}
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
