package daemon

import (
	"container/list"
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/route"
	"github.com/portshare/portshare/sharer/sniff"
)

// routeEntry is one registered route key: the workers that serve it and the
// connections waiting for one of them.
type routeEntry struct {
	uri     route.URI
	service string // owner: workers of another service conflict
	name    string // the owner's worker name, for status
	workers []*registration
	next    int // round-robin start
	queue   list.List
	grace   *time.Timer // reclaim: running while the route is departed
}

// registration is one worker: a control connection and the routes it holds.
type registration struct {
	id      uint64
	name    string
	service string
	pid     int
	uid     int
	ctl     *control.Conn
	credit  int // hand-offs it may hold un-acknowledged
	routes  []*routeEntry
	ready   bool // Registered was sent: it may receive hand-offs
	stalled bool // its control socket was full: no hand-offs until its next ack
	broken  bool // a send failed: no more hand-offs; its acks are still read until it leaves
	removed bool

	inflight map[uint64]*conn
	owed     map[uint64]struct{} // reclaim: timed out, credit returns on a late ack
}

// free is the credit w has left.
func (w *registration) free() int {
	if !w.ready || w.stalled || w.broken || w.removed {
		return 0
	}
	return w.credit - len(w.inflight) - len(w.owed)
}

// handoff is a send decided under the lock and made after it.
type handoff struct {
	w        *registration
	c        *conn
	deadline time.Time
}

// pickWorker returns the worker with the most free credit, starting the
// scan round-robin so equal workers share the load; nil if all are full.
func (re *routeEntry) pickWorker() *registration {
	var best *registration
	n := len(re.workers)
	for i := range n {
		w := re.workers[(re.next+i)%n]
		if f := w.free(); f > 0 && (best == nil || f > best.free()) {
			best = w
		}
	}
	if n > 0 {
		re.next = (re.next + 1) % n
	}
	return best
}

// armLocked sets c's deadline (queue or dispatch). The callback runs under
// d.mu, does nothing once the daemon is closing (shutdown ends every
// connection itself) or if the deadline was moved meanwhile, and makes its
// hand-offs each on its own goroutine so the clock never waits on a worker.
func (d *Daemon) armLocked(c *conn, at time.Time, fire func(*conn) []handoff) {
	d.clock.schedule(&c.dl, at, func(gen uint64) {
		d.mu.Lock()
		if d.closing.Load() || !d.clock.current(&c.dl, gen) {
			d.mu.Unlock()
			return
		}
		sends := fire(c)
		d.mu.Unlock()
		for _, h := range sends {
			d.wg.Go(func() { d.handOff(h) })
		}
	})
}

func (d *Daemon) stopTimerLocked(c *conn) { d.clock.cancel(&c.dl) }

// route finds c's route and dispatches or queues it.
func (d *Daemon) route(c *conn, cfg *config.Config) {
	d.mu.Lock()
	scheme := c.key.Protocol.String()
	_, re, ok := d.routes.Match(scheme, c.key.Host, c.port, c.key.Path)
	switch {
	case d.closing.Load():
		d.mu.Unlock()
		d.finish(c, Shutdown, "")
		d.closeConn(c)
		return
	case !ok:
		_, _, departed := d.departed.Match(scheme, c.key.Host, c.port, c.key.Path)
		d.mu.Unlock()
		if departed { // reclaim grace period
			d.finish(c, NoRoute, "unavailable")
			d.refuse(c, nmf.FaultEndpointUnavailable)
			return
		}
		d.finish(c, NoRoute, "no_route")
		d.log.Debug("no route", "conn", c.id, "protocol", c.key.Protocol, "host", c.key.Host, "port", c.port, "path", c.key.Path)
		d.refuse(c, nmf.FaultEndpointNotFound)
		return
	}
	c.route = re
	sends := d.enqueueLocked(c, cfg)
	d.mu.Unlock()
	d.send(sends)
}

// enqueueLocked hands c to a free worker, or queues it, or refuses it when
// the route's queue is full (compat aborts; reclaim answers ServerTooBusy).
// A connection handed off or queued stops counting against
// max_pending_connections; a refused one counts until it is closed.
func (d *Daemon) enqueueLocked(c *conn, cfg *config.Config) []handoff {
	re := c.route
	if re.queue.Len() == 0 {
		if w := re.pickWorker(); w != nil {
			d.releaseToken(c)
			return []handoff{d.assignLocked(w, c, cfg)}
		}
	}
	if re.queue.Len() >= cfg.MaxPendingConnections {
		d.finish(c, QueueFull, "queue_full")
		if d.policy == config.Compat {
			d.abort(c)
		} else {
			d.refuse(c, nmf.FaultServerTooBusy)
		}
		return nil
	}
	d.releaseToken(c)
	d.queueLocked(c, false, cfg)
	return nil
}

// queueLocked queues c. Under reclaim its deadline is set the first time it
// queues and kept if it queues again (a worker died with it in flight).
func (d *Daemon) queueLocked(c *conn, front bool, cfg *config.Config) {
	if front {
		c.qelem = c.route.queue.PushFront(c)
	} else {
		c.qelem = c.route.queue.PushBack(c)
	}
	d.m.queued.Inc()
	if d.policy == config.Reclaim { // compat: queued connections never expire
		if c.queueDeadline.IsZero() {
			c.queueDeadline = time.Now().Add(cfg.QueueTimeout)
		}
		d.armLocked(c, c.queueDeadline, d.queueExpiredLocked)
	}
}

func (d *Daemon) popLocked(re *routeEntry) *conn {
	e := re.queue.Front()
	if e == nil {
		return nil
	}
	c := re.queue.Remove(e).(*conn)
	c.qelem = nil
	d.stopTimerLocked(c)
	d.m.queued.Dec()
	return c
}

func (d *Daemon) queueExpiredLocked(c *conn) []handoff {
	if c.qelem == nil {
		return nil
	}
	c.route.queue.Remove(c.qelem)
	c.qelem = nil
	d.m.queued.Dec()
	d.finish(c, QueueTimeout, "queue_timeout")
	d.refuse(c, nmf.FaultServerTooBusy)
	return nil
}

// assignLocked gives c to w and starts the dispatch clock: the deadline
// the worker is told is the one the daemon enforces.
func (d *Daemon) assignLocked(w *registration, c *conn, cfg *config.Config) handoff {
	w.inflight[c.id] = c
	c.worker = w
	d.inflight.Add(1)
	deadline := time.Now().Add(cfg.DispatchTimeout)
	d.armLocked(c, deadline, d.dispatchExpiredLocked)
	return handoff{w, c, deadline}
}

// landLocked takes c back from w's hand-offs in flight, stopping its
// dispatch clock.
func (d *Daemon) landLocked(w *registration, c *conn) {
	delete(w.inflight, c.id)
	c.worker = nil
	d.inflight.Add(-1)
	d.stopTimerLocked(c)
}

// fillLocked gives w queued connections of its routes while it has credit,
// taking one route at a time so no route starves.
func (d *Daemon) fillLocked(w *registration) []handoff {
	var out []handoff
	cfg := d.cfg.Load()
	for progress := true; progress && w.free() > 0; {
		progress = false
		for _, re := range w.routes {
			if w.free() == 0 {
				break
			}
			if c := d.popLocked(re); c != nil {
				out = append(out, d.assignLocked(w, c, cfg))
				progress = true
			}
		}
	}
	return out
}

// fillRouteLocked gives re's queued connections to whichever of its
// workers has credit.
func (d *Daemon) fillRouteLocked(re *routeEntry) []handoff {
	var out []handoff
	cfg := d.cfg.Load()
	for re.queue.Len() > 0 {
		w := re.pickWorker()
		if w == nil {
			break
		}
		out = append(out, d.assignLocked(w, d.popLocked(re), cfg))
	}
	return out
}

// send makes hand-offs decided under the lock: one inline, several each on
// its own goroutine so one stuck worker delays no other.
func (d *Daemon) send(hs []handoff) {
	if len(hs) == 1 {
		d.handOff(hs[0])
		return
	}
	for _, h := range hs {
		d.wg.Go(func() { d.handOff(h) })
	}
}

// handOff passes c's socket and pre-read bytes to w without waiting. A
// send that fails did not deliver the message (SEQPACKET sends are whole or
// nothing), so the connection is still the daemon's:
//   - a full socket is back-pressure: c queues again at the front and w
//     gets nothing more until its next acknowledgement;
//   - any other failure under compat fails c and drops w, as SMSvcHost does
//     for any failed hand-off;
//   - under reclaim c queues again at the front and w gets nothing more;
//     its write side is shut down so a live worker sees EOF and leaves,
//     while its acks still arrive.
func (d *Daemon) handOff(h handoff) {
	w, c := h.w, h.c
	hdr := control.Handoff{
		ID: c.id, Route: c.route.uri.String(), Via: c.key.Via,
		Local: c.tcp.LocalAddr().String(), Remote: c.tcp.RemoteAddr().String(),
		Deadline: h.deadline.UnixNano(),
	}
	rc, err := c.tcp.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = w.ctl.Send(control.TypeHandoff, hdr, c.pre, int(fd), -1)
		})
		if err == nil {
			err = cerr
		}
	}
	if err == nil {
		return
	}
	d.mu.Lock()
	if w.inflight[c.id] != c {
		d.mu.Unlock()
		return
	}
	d.landLocked(w, c)
	var sends []handoff
	switch {
	case errors.Is(err, control.ErrWouldBlock):
		// The worker holds more un-accepted hand-offs than its socket
		// buffer: back-pressure, not breakage. It gets more after its
		// next acknowledgement; others may take this one now.
		w.stalled = true
		d.queueLocked(c, true, d.cfg.Load())
		sends = d.fillRouteLocked(c.route)
	case errors.Is(err, control.ErrTooLarge):
		d.finish(c, DispatchError, "too_large")
		d.refuse(c, nmf.FaultServerTooBusy)
	case d.policy == config.Compat:
		// SMSvcHost logs event 8 for any failed hand-off and drops the worker.
		d.finish(c, DispatchError, "send_failed")
		d.log.Error(LeakedHandleMessage, "conn", c.id, "route", c.route.uri.String(), "worker", w.name,
			"worker_pid", w.pid, "policy", d.policy, "why", err.Error())
		d.refuse(c, nmf.FaultConnectionDispatchFailed)
		sends = d.evictLocked(w, "hand-off failed", d.cfg.Load().ReregisterBackoff)
	default:
		d.breakLocked(w, err)
		d.queueLocked(c, true, d.cfg.Load())
		sends = append(sends, d.fillRouteLocked(c.route)...)
	}
	d.mu.Unlock()
	d.send(sends)
}

// breakLocked stops hand-offs to a worker whose control socket failed.
func (d *Daemon) breakLocked(w *registration, err error) {
	if w.broken || w.removed {
		return
	}
	w.broken = true
	d.log.Warn("hand-off send failed; no more hand-offs to this worker", "worker", w.name, "pid", w.pid, "err", err)
	if rc, e := w.ctl.UnixConn().SyscallConn(); e == nil {
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_WR) })
	}
}

// ack completes a hand-off: the worker's Accept took the connection, so the
// daemon closes its copy. A late ack (after a reclaim timeout) only returns
// the credit.
func (d *Daemon) ack(w *registration, a control.Ack) {
	d.mu.Lock()
	w.stalled = false // it is reading its socket again
	c := w.inflight[a.ID]
	if c == nil {
		delete(w.owed, a.ID)
		sends := d.fillLocked(w)
		d.mu.Unlock()
		d.send(sends)
		return
	}
	d.landLocked(w, c)
	var sends []handoff
	switch {
	case a.Refused != "":
		d.log.Warn("worker refused a hand-off", "conn", c.id, "worker", w.name, "pid", w.pid, "why", a.Refused)
		d.finish(c, DispatchError, "worker_refused")
		if d.policy == config.Compat {
			d.refuse(c, nmf.FaultConnectionDispatchFailed)
		} else {
			d.refuse(c, nmf.FaultServerTooBusy)
		}
	case a.Expired:
		sends = d.timedOutLocked(w, c, "the worker found the hand-off past its deadline")
	default:
		d.finish(c, Dispatched, "")
	}
	sends = append(sends, d.fillLocked(w)...)
	d.mu.Unlock()
	if a.Refused == "" && !a.Expired {
		d.closeConn(c)
	}
	d.send(sends)
}

func (d *Daemon) dispatchExpiredLocked(c *conn) []handoff {
	w := c.worker
	if w == nil || w.inflight[c.id] != c {
		return nil
	}
	d.landLocked(w, c)
	if d.policy == config.Reclaim {
		w.owed[c.id] = struct{}{} // the worker may still take it: its credit returns then
	}
	return d.timedOutLocked(w, c, "no acknowledgement within dispatch_timeout")
}

// timedOutLocked is the leaked-handle event. Compat follows SMSvcHost 3.0:
// the client gets ConnectionDispatchFailed and the worker is dropped, with
// the cascade that follows. Reclaim tells the client the server is busy,
// shuts the socket down (the worker's copy too) so nobody waits on it, and
// keeps the worker.
func (d *Daemon) timedOutLocked(w *registration, c *conn, why string) []handoff {
	cfg := d.cfg.Load()
	d.finish(c, DispatchTimeout, "timeout")
	d.log.Error(LeakedHandleMessage, "conn", c.id, "route", c.route.uri.String(), "worker", w.name,
		"worker_pid", w.pid, "dispatch_timeout", cfg.DispatchTimeout, "policy", d.policy, "why", why)
	if d.policy == config.Compat {
		d.refuse(c, nmf.FaultConnectionDispatchFailed)
		return d.evictLocked(w, "dispatch timeout", cfg.ReregisterBackoff)
	}
	// Shut the shared socket down so the worker's copy is dead too; the
	// reply still goes out (it shuts down sending after writing), except
	// for TLS, which gets no reply and is shut down both ways now.
	how := unix.SHUT_RD
	if c.key.Protocol == sniff.TLS {
		how = unix.SHUT_RDWR
	}
	shutdownSocket(c.tcp, how)
	d.refuse(c, nmf.FaultServerTooBusy)
	return nil
}

// evictLocked drops a worker (compat): it may register again only after
// backoff.
func (d *Daemon) evictLocked(w *registration, reason string, backoff time.Duration) []handoff {
	if w.removed {
		return nil
	}
	if backoff > 0 {
		d.backoff[backoffKey(w.name, w.uid)] = time.Now().Add(backoff)
	}
	d.m.evictions.WithLabelValues(reason).Inc()
	d.log.Warn("worker evicted", "worker", w.name, "id", w.id, "pid", w.pid, "reason", reason, "may_register_again_in", backoff)
	ctl := w.ctl
	d.wg.Go(func() {
		ctl.Send(control.TypeEvicted, control.Evicted{Reason: reason, RetryAfterMS: backoff.Milliseconds()}, nil, -1, time.Second)
		ctl.Close()
	})
	return d.removeWorkerLocked(w)
}

// removeWorkerLocked forgets a worker whose control connection ended. Its
// acks were all read before the end, and the worker library acknowledges
// before its Accept returns (and drops a connection it could not
// acknowledge), so a hand-off still in flight never reached the service:
// reclaim queues it again at the front; compat fails it with
// ConnectionDispatchFailed. Routes left without workers are orphaned.
func (d *Daemon) removeWorkerLocked(w *registration) []handoff {
	if w.removed {
		return nil
	}
	w.removed = true
	delete(d.workers, w.id)
	d.m.registrations.Dec()
	cfg := d.cfg.Load()
	for _, c := range w.inflight {
		d.landLocked(w, c)
		switch {
		case d.closing.Load():
			d.finish(c, Shutdown, "")
			d.closeConn(c)
		case d.policy == config.Compat:
			d.finish(c, DispatchError, "worker_gone")
			d.refuse(c, nmf.FaultConnectionDispatchFailed)
		default:
			d.queueLocked(c, true, cfg)
		}
	}
	clear(w.owed)
	var sends []handoff
	for _, re := range w.routes {
		re.workers = remove(re.workers, w)
		if len(re.workers) == 0 {
			d.orphanLocked(re)
		} else {
			sends = append(sends, d.fillRouteLocked(re)...)
		}
	}
	w.routes = nil
	return sends
}

// orphanLocked deals with a route whose last worker left. Its URI leaves
// the route table at once, so new connections match the next route as
// http.sys would. Compat also aborts its queue and stops listening on a port
// with no routes left. Reclaim keeps the entry among the departed for
// grace_period: connections that would have matched it and match nothing
// live get EndpointUnavailable/503 (and its port stays open), and its
// queued connections keep waiting (up to queue_timeout) for a worker of the
// same route to come back.
func (d *Daemon) orphanLocked(re *routeEntry) {
	d.unlistLocked(re)
	grace := d.cfg.Load().GracePeriod
	if d.policy == config.Compat || d.closing.Load() || grace <= 0 {
		d.dropRouteLocked(re)
		return
	}
	if re.grace != nil {
		return // already departed
	}
	if err := d.departed.Insert(re.uri, re); err != nil {
		d.dropRouteLocked(re) // cannot happen: a departed key is revived, never re-departed
		return
	}
	var t *time.Timer
	d.wg.Add(1)
	t = time.AfterFunc(grace, func() {
		defer d.wg.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closing.Load() || re.grace != t {
			return
		}
		re.grace = nil
		d.dropRouteLocked(re)
	})
	re.grace = t
}

// unlistLocked takes re out of the live route table.
func (d *Daemon) unlistLocked(re *routeEntry) {
	if cur, ok := d.routes.Get(re.uri); ok && cur == re {
		d.routes.Delete(re.uri)
		d.m.urisUnregistered.Inc()
		d.log.Info("route removed", "route", re.uri.String())
	}
}

// reviveLocked brings a departed route back for a worker registering it.
func (d *Daemon) reviveLocked(re *routeEntry) {
	d.stopGraceLocked(re)
	d.departed.Delete(re.uri)
}

func (d *Daemon) stopGraceLocked(re *routeEntry) {
	if re.grace != nil {
		if re.grace.Stop() {
			d.wg.Done()
		}
		re.grace = nil
	}
}

// dropRouteLocked forgets a route with no workers, ends its queue, and
// closes its port if no route, live or departed, is left on it.
func (d *Daemon) dropRouteLocked(re *routeEntry) {
	for c := d.popLocked(re); c != nil; c = d.popLocked(re) {
		switch {
		case d.closing.Load():
			d.finish(c, Shutdown, "")
			d.closeConn(c)
		case d.policy == config.Compat:
			d.finish(c, DispatchError, "queue_aborted")
			d.abort(c)
		default:
			d.finish(c, QueueTimeout, "queue_timeout")
			d.refuse(c, nmf.FaultEndpointUnavailable)
		}
	}
	d.unlistLocked(re)
	if cur, ok := d.departed.Get(re.uri); ok && cur == re {
		d.departed.Delete(re.uri)
	}
	port := re.uri.Port
	if p := d.ports[port]; p != nil && !d.routes.PortInUse(port) && !d.departed.PortInUse(port) {
		p.close()
		delete(d.ports, port)
		d.log.Info("port closed: no routes left", "port", port)
	}
}
