package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// gate is SMSvcHost's accept condition: a new accept is posted only while
// connections accepted whose routing key is not yet decoded, plus accepts
// outstanding, stay below max_pending_connections. At the cap accepting
// stops and new connections wait in the kernel backlog; nothing is
// rejected. (This is why slow or silent clients can starve accepting until
// receive_timeout frees their slots.)
//
// Each listening socket has its own gate, as each SMSvcHost listener has its
// own count: an idle listener's outstanding accepts cannot starve a busy
// one.
type gate struct {
	mu     sync.Mutex
	n, cap int
	closed bool
	wake   chan struct{}
}

func newGate(capacity int) *gate {
	return &gate{cap: capacity, wake: make(chan struct{})}
}

// acquire takes a token, waiting while the gate is full; it returns false
// once the gate is closed or done is.
func (g *gate) acquire(done <-chan struct{}) bool {
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return false
		}
		if g.n < g.cap {
			g.n++
			g.mu.Unlock()
			return true
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-done:
			return false
		}
	}
}

func (g *gate) release() {
	g.mu.Lock()
	g.n--
	g.broadcastLocked()
	g.mu.Unlock()
}

func (g *gate) broadcastLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}

func (g *gate) setCap(c int) {
	g.mu.Lock()
	g.cap = c
	g.broadcastLocked()
	g.mu.Unlock()
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.broadcastLocked()
	g.mu.Unlock()
}

// portListener is one shared port: a listening socket per listen address,
// each with its own gate.
type portListener struct {
	port  int
	lns   []*net.TCPListener
	gates []*gate
	done  chan struct{}
	once  sync.Once
}

// openPort binds port on every listen address and starts
// max_pending_accepts accept loops on each. An address family the machine
// lacks (no IPv6) is skipped; any other failure, or no address bound, is an
// error and nothing stays open.
func (d *Daemon) openPort(port int) (*portListener, error) {
	cfg := d.cfg.Load()
	p := &portListener{port: port, done: make(chan struct{})}
	for _, a := range cfg.ListenAddresses {
		ln, err := listenTCP(a, port, cfg.ListenBacklog)
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL) {
			d.log.Warn("listen address unavailable; skipped", "address", a, "port", port, "err", err)
			continue
		}
		if err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
		p.gates = append(p.gates, newGate(cfg.MaxPendingConnections))
	}
	if len(p.lns) == 0 {
		return nil, fmt.Errorf("port %d: no listen address could be bound", port)
	}
	for i, ln := range p.lns {
		for range cfg.MaxPendingAccepts {
			d.wg.Go(func() { d.acceptLoop(p, ln, p.gates[i]) })
		}
	}
	d.log.Info("listening", "port", port, "addresses", cfg.ListenAddresses, "backlog", cfg.ListenBacklog)
	return p, nil
}

// listenTCP makes the socket with x/sys/unix so that backlog really reaches
// listen(2) (net.Listen always passes somaxconn).
func listenTCP(addr string, port, backlog int) (*net.TCPListener, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	ip = ip.Unmap()
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	if ip.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	where := net.JoinHostPort(addr, strconv.Itoa(port))
	fail := func(op string, err error) (*net.TCPListener, error) {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: port is in use by another program: %w", where, err)
		}
		return nil, fmt.Errorf("listen on %s: %w", where, os.NewSyscallError(op, err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if family == unix.AF_INET6 {
		// Both "0.0.0.0" and "::" may be listed: keep the families apart.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	f := os.NewFile(uintptr(fd), "listen "+where)
	ln, err := net.FileListener(f) // dups fd into the runtime poller
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", where, err)
	}
	return ln.(*net.TCPListener), nil
}

// ListenQueue is one listening socket's accept queue as the kernel keeps
// it: the backlog that listen_backlog sets, and how much of it is in use.
// A full queue makes the kernel drop new connections (TcpExt
// ListenOverflows), which clients see as SYN retries.
type ListenQueue struct {
	Address string `json:"address"` // host:port
	Queued  int    `json:"queued"`  // connections the kernel completed, waiting for accept(2)
	Backlog int    `json:"backlog"` // listen_backlog as the kernel applied it (at most net.core.somaxconn); the queue is full at Backlog+1
}

// queues reads the accept queue of each of the port's sockets: for a
// listening socket, TCP_INFO's unacked and sacked fields are the queue's
// length and its cap (one getsockopt each, cheap enough for every status).
func (p *portListener) queues() []ListenQueue {
	var qs []ListenQueue
	for _, ln := range p.lns {
		rc, err := ln.SyscallConn()
		if err != nil {
			continue
		}
		var info *unix.TCPInfo
		rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if err != nil || info == nil {
			continue
		}
		qs = append(qs, ListenQueue{Address: ln.Addr().String(), Queued: int(info.Unacked), Backlog: int(info.Sacked)})
	}
	return qs
}

// setBacklog calls listen(2) again: Linux applies a new backlog to a
// listening socket in place.
func (p *portListener) setBacklog(n int) {
	for _, ln := range p.lns {
		if rc, err := ln.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.Listen(int(fd), n) })
		}
	}
}

func (p *portListener) setPendingCap(n int) {
	for _, g := range p.gates {
		g.setCap(n)
	}
}

func (p *portListener) close() {
	p.once.Do(func() {
		close(p.done)
		for _, ln := range p.lns {
			ln.Close()
		}
		for _, g := range p.gates {
			g.close()
		}
	})
}

// acceptLoop is one of max_pending_accepts outstanding accepts. Out of
// descriptors (EMFILE, ENFILE) or memory, it pauses with a growing back-off
// instead of spinning, and counts the pause.
func (d *Daemon) acceptLoop(p *portListener, ln *net.TCPListener, g *gate) {
	var backoff time.Duration
	for {
		if !g.acquire(p.done) {
			return
		}
		tc, err := ln.AcceptTCP()
		if err != nil {
			g.release()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			reason := "error"
			switch {
			case errors.Is(err, unix.EMFILE):
				reason = "emfile"
			case errors.Is(err, unix.ENFILE):
				reason = "enfile"
			case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
				reason = "enomem"
			}
			d.m.acceptPauses.WithLabelValues(reason).Inc()
			backoff = min(max(5*time.Millisecond, 2*backoff), time.Second)
			if backoff == 5*time.Millisecond {
				d.log.Warn("accept failed; pausing accepts", "port", p.port, "reason", reason, "err", err)
			}
			select {
			case <-time.After(backoff):
			case <-p.done:
				return
			}
			continue
		}
		backoff = 0
		c := &conn{id: d.nextID.Add(1), tcp: tc, port: p.port, accepted: time.Now(), gate: g, dl: deadline{idx: -1}}
		c.token.Store(true)
		d.ledger.accept()
		d.m.accepted.Inc()
		d.track(c)
		d.wg.Go(func() { d.serveConn(c) })
	}
}
