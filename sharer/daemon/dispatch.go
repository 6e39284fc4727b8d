package daemon

import (
	"container/list"
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
	workers []*registration
	next    int // round-robin start
	queue   list.List
	grace   *time.Timer // reclaim: running while the route has no workers
}

func (re *routeEntry) popFront() *conn {
	e := re.queue.Front()
	if e == nil {
		return nil
	}
	c := re.queue.Remove(e).(*conn)
	c.qelem = nil
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	return c
}

// pickWorker returns the worker with the most free credit, starting the
// scan round-robin so equal workers share the load; nil if all are full.
func (re *routeEntry) pickWorker() *registration {
	var best *registration
	n := len(re.workers)
	for i := range n {
		w := re.workers[(re.next+i)%n]
		if w.used < w.credit && (best == nil || w.credit-w.used > best.credit-best.used) {
			best = w
		}
	}
	if n > 0 {
		re.next = (re.next + 1) % n
	}
	return best
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
	used    int // credit in use: in flight plus timed out and not yet acknowledged
	routes  []*routeEntry
	removed bool

	inflight map[uint64]*conn
	owed     map[uint64]struct{} // reclaim: timed out, credit returns on a late ack
}

// handoff is a send decided under the lock and made after it.
type handoff struct {
	w *registration
	c *conn
}

// route finds c's route and dispatches or queues it. The connection stops
// counting against max_pending_connections here: its key is decoded, and
// from now on the route's queue (capped separately) holds it.
func (d *Daemon) route(c *conn, cfg *config.Config) {
	d.releaseToken(c)
	d.mu.Lock()
	_, re, ok := d.routes.Match(c.key.Protocol.String(), c.key.Host, c.port, c.key.Path)
	switch {
	case d.closing.Load():
		d.mu.Unlock()
		d.finish(c, Shutdown, "")
		d.closeConn(c)
		return
	case !ok:
		d.mu.Unlock()
		d.finish(c, NoRoute, "no_route")
		d.log.Debug("no route", "conn", c.id, "protocol", c.key.Protocol, "host", c.key.Host, "port", c.port, "path", c.key.Path)
		d.refuse(c, nmf.FaultEndpointNotFound, 404)
		return
	case len(re.workers) == 0: // reclaim grace period
		d.mu.Unlock()
		d.finish(c, NoRoute, "unavailable")
		d.refuse(c, nmf.FaultEndpointUnavailable, 503)
		return
	}
	c.route = re
	sends := d.enqueueLocked(c, cfg)
	d.mu.Unlock()
	d.send(sends)
}

// enqueueLocked hands c to a free worker, or queues it, or refuses it when
// the route's queue is full (compat aborts; reclaim answers ServerTooBusy).
func (d *Daemon) enqueueLocked(c *conn, cfg *config.Config) []handoff {
	re := c.route
	if re.queue.Len() == 0 {
		if w := re.pickWorker(); w != nil {
			return []handoff{d.assignLocked(w, c)}
		}
	}
	if re.queue.Len() >= cfg.MaxPendingConnections {
		d.finish(c, QueueFull, "queue_full")
		if d.policy == config.Compat {
			d.abort(c)
		} else {
			d.refuse(c, nmf.FaultServerTooBusy, 503)
		}
		return nil
	}
	d.queueLocked(c, false, cfg)
	return nil
}

func (d *Daemon) queueLocked(c *conn, front bool, cfg *config.Config) {
	if front {
		c.qelem = c.route.queue.PushFront(c)
	} else {
		c.qelem = c.route.queue.PushBack(c)
	}
	d.m.queued.Inc()
	if d.policy == config.Reclaim { // compat: queued connections never expire
		c.timer = time.AfterFunc(cfg.QueueTimeout, func() { d.queueExpired(c) })
	}
}

func (d *Daemon) queueExpired(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.qelem == nil {
		return
	}
	c.route.queue.Remove(c.qelem)
	c.qelem, c.timer = nil, nil
	d.m.queued.Dec()
	d.finish(c, QueueTimeout, "queue_timeout")
	d.refuse(c, nmf.FaultServerTooBusy, 503)
}

func (d *Daemon) assignLocked(w *registration, c *conn) handoff {
	w.used++
	w.inflight[c.id] = c
	c.worker = w
	d.m.inflight.Inc()
	return handoff{w, c}
}

// fillLocked gives w queued connections of its routes while it has credit,
// taking one route at a time so no route starves.
func (d *Daemon) fillLocked(w *registration) []handoff {
	var out []handoff
	for progress := true; progress && w.used < w.credit; {
		progress = false
		for _, re := range w.routes {
			if w.used >= w.credit {
				break
			}
			if c := re.popFront(); c != nil {
				d.m.queued.Dec()
				out = append(out, d.assignLocked(w, c))
				progress = true
			}
		}
	}
	return out
}

// send makes hand-offs decided under the lock.
func (d *Daemon) send(hs []handoff) {
	for _, h := range hs {
		d.handOff(h.w, h.c)
	}
}

// handOff passes c's socket and pre-read bytes to w, then starts the
// dispatch_timeout clock. A failed send means the worker is gone: its
// control connection is closed and its read loop deals with c.
func (d *Daemon) handOff(w *registration, c *conn) {
	cfg := d.cfg.Load()
	hdr := control.Handoff{
		ID: c.id, Route: c.route.uri.String(), Via: c.key.Via,
		Local: c.tcp.LocalAddr().String(), Remote: c.tcp.RemoteAddr().String(),
		Deadline: time.Now().Add(cfg.DispatchTimeout).UnixNano(),
	}
	rc, err := c.tcp.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = w.ctl.Send(control.TypeHandoff, hdr, c.pre, int(fd), cfg.DispatchTimeout)
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		d.log.Warn("hand-off send failed; dropping worker", "worker", w.name, "pid", w.pid, "conn", c.id, "err", err)
		w.ctl.Close()
		return
	}
	d.mu.Lock()
	if w.inflight[c.id] == c && c.timer == nil {
		c.timer = time.AfterFunc(cfg.DispatchTimeout, func() { d.dispatchExpired(w, c) })
	}
	d.mu.Unlock()
}

// ack completes a hand-off: the worker's Accept took the connection, so the
// daemon closes its copy. A late ack (after a reclaim timeout) only returns
// the credit.
func (d *Daemon) ack(w *registration, a control.Ack) {
	d.mu.Lock()
	c := w.inflight[a.ID]
	if c == nil {
		if _, ok := w.owed[a.ID]; ok {
			delete(w.owed, a.ID)
			w.used--
		}
		sends := d.fillLocked(w)
		d.mu.Unlock()
		d.send(sends)
		return
	}
	delete(w.inflight, a.ID)
	d.m.inflight.Dec()
	w.used--
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if a.Expired {
		d.timedOutLocked(w, c, "worker found the hand-off past its deadline")
	} else {
		d.finish(c, Dispatched, "")
	}
	sends := d.fillLocked(w)
	d.mu.Unlock()
	if !a.Expired {
		d.closeConn(c)
	}
	d.send(sends)
}

func (d *Daemon) dispatchExpired(w *registration, c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.inflight[c.id] != c {
		return
	}
	delete(w.inflight, c.id)
	d.m.inflight.Dec()
	c.timer = nil
	w.used-- // timedOutLocked takes it again under reclaim
	d.timedOutLocked(w, c, "no acknowledgement within dispatch_timeout")
	if d.policy == config.Reclaim {
		sends := d.fillLocked(w)
		d.wg.Go(func() { d.send(sends) })
	}
}

// timedOutLocked is the leaked-handle event. Compat follows SMSvcHost 3.0:
// the client gets ConnectionDispatchFailed and the worker is dropped, with
// the cascade that follows. Reclaim tells the client the server is busy,
// shuts the socket down (the worker's copy too) so nobody waits on it, and
// keeps the worker, whose credit returns when it acknowledges late.
func (d *Daemon) timedOutLocked(w *registration, c *conn, why string) {
	cfg := d.cfg.Load()
	d.finish(c, DispatchTimeout, "timeout")
	d.log.Error(LeakedHandleMessage, "conn", c.id, "route", c.route.uri.String(), "worker", w.name,
		"worker_pid", w.pid, "dispatch_timeout", cfg.DispatchTimeout, "policy", d.policy, "why", why)
	if d.policy == config.Compat {
		d.refuse(c, nmf.FaultConnectionDispatchFailed, 503)
		d.evictLocked(w, "dispatch timeout", cfg.ReregisterBackoff)
		return
	}
	w.used++
	w.owed[c.id] = struct{}{}
	// Shut the shared socket down so the worker's copy is dead too; the
	// reply still goes out (it shuts down sending after writing), except
	// for TLS, which gets no reply and is shut down both ways now.
	how := unix.SHUT_RD
	if c.key.Protocol == sniff.TLS {
		how = unix.SHUT_RDWR
	}
	if rc, err := c.tcp.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), how) })
	}
	d.refuse(c, nmf.FaultServerTooBusy, 503)
}

// evictLocked drops a worker (compat): it may register again only after
// backoff.
func (d *Daemon) evictLocked(w *registration, reason string, backoff time.Duration) {
	if w.removed {
		return
	}
	if backoff > 0 {
		d.backoff[w.service] = time.Now().Add(backoff)
	}
	ctl := w.ctl
	d.wg.Go(func() {
		ctl.Send(control.TypeEvicted, control.Evicted{Reason: reason, RetryAfterMS: backoff.Milliseconds()}, nil, -1, time.Second)
		ctl.Close()
	})
	d.removeWorkerLocked(w)
}

// removeWorkerLocked forgets a worker whose control connection ended.
// Hand-offs it never acknowledged never reached its Accept, so reclaim
// queues them again at the front; compat fails them with
// ConnectionDispatchFailed. Routes left without workers are orphaned.
func (d *Daemon) removeWorkerLocked(w *registration) []handoff {
	if w.removed {
		return nil
	}
	w.removed = true
	delete(d.workers, w.id)
	d.m.registrations.Dec()
	cfg := d.cfg.Load()
	for id, c := range w.inflight {
		delete(w.inflight, id)
		d.m.inflight.Dec()
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
		c.worker = nil
		if d.policy == config.Compat || d.closing.Load() {
			if d.closing.Load() {
				d.finish(c, Shutdown, "")
				d.closeConn(c)
			} else {
				d.finish(c, DispatchError, "worker_gone")
				d.refuse(c, nmf.FaultConnectionDispatchFailed, 503)
			}
			continue
		}
		d.queueLocked(c, true, cfg)
	}
	var sends []handoff
	for _, re := range w.routes {
		re.workers = remove(re.workers, w)
		if len(re.workers) == 0 {
			d.orphanLocked(re)
		}
	}
	for _, re := range w.routes {
		for _, x := range re.workers {
			sends = append(sends, d.fillLocked(x)...)
		}
	}
	w.routes = nil
	return sends
}

// orphanLocked deals with a route whose last worker left. Compat: the
// route's queue is aborted, the route removed, and a port with no routes
// left stops listening. Reclaim: the route answers EndpointUnavailable/503
// for grace_period; queued connections keep waiting (up to queue_timeout)
// for a worker to come back.
func (d *Daemon) orphanLocked(re *routeEntry) {
	if d.policy == config.Reclaim && !d.closing.Load() {
		grace := d.cfg.Load().GracePeriod
		if grace > 0 {
			re.grace = time.AfterFunc(grace, func() { d.graceExpired(re) })
			return
		}
	}
	d.dropRouteLocked(re)
}

func (d *Daemon) graceExpired(re *routeEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(re.workers) > 0 || re.grace == nil {
		return
	}
	re.grace = nil
	d.dropRouteLocked(re)
}

// dropRouteLocked removes a route with no workers and ends its queue.
func (d *Daemon) dropRouteLocked(re *routeEntry) {
	for c := re.popFront(); c != nil; c = re.popFront() {
		d.m.queued.Dec()
		switch {
		case d.closing.Load():
			d.finish(c, Shutdown, "")
			d.closeConn(c)
		case d.policy == config.Compat:
			d.finish(c, DispatchError, "queue_aborted")
			d.abort(c)
		default:
			d.finish(c, QueueTimeout, "queue_timeout")
			d.refuse(c, nmf.FaultEndpointUnavailable, 503)
		}
	}
	if cur, ok := d.routes.Get(re.uri); ok && cur == re {
		d.routes.Delete(re.uri)
		d.m.urisUnregistered.Inc()
		d.log.Info("route removed", "route", re.uri.String())
	}
	port := re.uri.Port
	if p := d.ports[port]; p != nil && !d.routes.PortInUse(port) {
		p.close()
		delete(d.ports, port)
		d.log.Info("port closed: no routes left", "port", port)
	}
}
