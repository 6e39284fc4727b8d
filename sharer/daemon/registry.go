package daemon

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"time"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/route"
)

// registerTimeout bounds how long a new control connection may take to say
// what it wants.
const registerTimeout = 10 * time.Second

func (d *Daemon) acceptControl() {
	for {
		uc, err := d.ctl.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("control accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		d.wg.Go(func() { d.serveControl(uc) })
	}
}

// serveControl runs one control connection: a status query, or a worker's
// registration followed by its acks until it goes away.
func (d *Daemon) serveControl(uc *net.UnixConn) {
	cc, err := control.NewConn(uc)
	if err != nil {
		uc.Close()
		return
	}
	defer cc.Close()
	cred, err := control.PeerCred(uc)
	if err != nil {
		d.log.Warn("control peer credentials unavailable", "err", err)
		return
	}
	cc.SetDeadline(time.Now().Add(registerTimeout))
	m, err := cc.Recv()
	if err != nil {
		if errors.Is(err, control.ErrVersion) {
			cc.Send(control.TypeError, control.Error{Code: control.CodeVersion, Message: err.Error()}, nil, -1, time.Second)
		}
		return
	}
	m.CloseFD() // workers never send descriptors
	switch m.Type {
	case control.TypeStatus:
		d.sendStatus(cc)
		return
	case control.TypeRegister:
	default:
		cc.Send(control.TypeError, control.Error{Code: control.CodeBadMessage, Message: fmt.Sprintf("expected register or status, got %s", m.Type)}, nil, -1, time.Second)
		return
	}
	var reg control.Register
	if err := m.Unmarshal(&reg); err != nil {
		cc.Send(control.TypeError, control.Error{Code: control.CodeBadMessage, Message: err.Error()}, nil, -1, time.Second)
		return
	}
	w, cerr := d.register(cc, cred.Uid, cred.Gid, int(cred.Pid), reg)
	if cerr != nil {
		d.log.Warn("registration refused", "name", reg.Name, "pid", cred.Pid, "uid", cred.Uid, "code", cerr.Code, "err", cerr.Message)
		cc.Send(control.TypeError, cerr, nil, -1, time.Second)
		return
	}
	cc.SetDeadline(time.Time{})
	routes := make([]string, len(w.routes))
	for i, re := range w.routes {
		routes[i] = re.uri.String()
	}
	if err := cc.Send(control.TypeRegistered, control.Registered{ID: w.id, Routes: routes, Policy: string(d.policy), MaxInflight: w.credit}, nil, -1, time.Second); err != nil {
		cc.Close()
	}
	d.log.Info("worker registered", "worker", w.name, "id", w.id, "pid", w.pid, "uid", w.uid, "routes", routes, "max_inflight", w.credit)
	// Only now may hand-offs follow: the worker reads Registered first.
	d.mu.Lock()
	w.ready = true
	sends := d.fillLocked(w)
	d.mu.Unlock()
	d.send(sends)
	d.workerLoop(w)
	d.mu.Lock()
	sends = d.removeWorkerLocked(w)
	d.mu.Unlock()
	d.send(sends)
	d.log.Info("worker gone", "worker", w.name, "id", w.id, "pid", w.pid)
}

func (d *Daemon) workerLoop(w *registration) {
	for {
		m, err := w.ctl.Recv()
		if err != nil {
			return
		}
		m.CloseFD()
		switch m.Type {
		case control.TypeAck:
			var a control.Ack
			if m.Unmarshal(&a) == nil {
				d.ack(w, a)
			}
		case control.TypeUnregister:
			var u control.Unregister
			if err := m.Unmarshal(&u); err != nil {
				w.ctl.Send(control.TypeError, control.Error{Code: control.CodeBadMessage, Message: err.Error()}, nil, -1, time.Second)
				continue
			}
			if cerr := d.unregister(w, u.Routes); cerr != nil {
				w.ctl.Send(control.TypeError, cerr, nil, -1, time.Second)
			} else {
				w.ctl.Send(control.TypeUnregistered, control.Unregistered(u), nil, -1, time.Second)
			}
		case control.TypeStatus:
			d.sendStatus(w.ctl)
		default:
			d.log.Warn("unexpected control message from worker; closing it", "worker", w.name, "type", m.Type)
			return
		}
	}
}

// register admits a worker: its uid must be allowed, its routes valid and
// not held by another service, and (compat) its back-off over. Ports of new
// routes are opened here; on any failure nothing changes. The worker gets
// no hand-off until it is marked ready.
func (d *Daemon) register(cc *control.Conn, uid, gid uint32, pid int, reg control.Register) (*registration, *control.Error) {
	cfg := d.cfg.Load()
	if !d.accounts.Load().Allows(int(uid), int(gid), pid) {
		return nil, &control.Error{Code: control.CodeDenied, Message: fmt.Sprintf(
			"%s is not allowed to register: add %q (or uid:%d, or one of its groups as group:NAME) to allow_accounts in %s and send the daemon SIGHUP",
			accountName(uid), userName(uid), uid, cfgName(cfg))}
	}
	if len(reg.Routes) == 0 {
		return nil, &control.Error{Code: control.CodeBadRoute, Message: "register needs at least one route"}
	}
	uris := make([]route.URI, 0, len(reg.Routes))
	for _, s := range reg.Routes {
		u, err := route.Parse(s)
		if err != nil {
			return nil, &control.Error{Code: control.CodeBadRoute, Message: err.Error()}
		}
		uris = append(uris, u)
	}
	credit := max(reg.MaxInflight, 1)
	if d.policy == config.Compat {
		credit = 1 // SMSvcHost: one hand-off in flight per worker
	}
	w := &registration{
		id: d.nextID.Add(1), name: reg.Name, pid: pid, uid: int(uid), ctl: cc, credit: credit,
		inflight: map[uint64]*conn{}, owed: map[uint64]struct{}{},
	}
	w.service = fmt.Sprintf("%s/uid:%d", reg.Name, uid)
	if reg.Name == "" {
		w.service = fmt.Sprintf("#%d", w.id) // anonymous workers never share routes
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing.Load() {
		return nil, &control.Error{Code: control.CodeShutdown, Message: "daemon is shutting down"}
	}
	now := time.Now()
	for k, until := range d.backoff {
		if !now.Before(until) {
			delete(d.backoff, k)
		}
	}
	if until, ok := d.backoff[backoffKey(reg.Name, int(uid))]; ok {
		left := until.Sub(now)
		return nil, &control.Error{Code: control.CodeBackoff, RetryAfterMS: left.Milliseconds() + 1,
			Message: fmt.Sprintf("worker %q was dropped after a dispatch timeout; it may register again in %s", reg.Name, left.Round(time.Millisecond))}
	}
	seen := map[string]bool{}
	for _, u := range uris {
		if seen[u.Key()] {
			return nil, &control.Error{Code: control.CodeBadRoute, Message: fmt.Sprintf("route %s listed twice", u)}
		}
		seen[u.Key()] = true
		if re, ok := d.routes.Get(u); ok && re.service != w.service {
			return nil, &control.Error{Code: control.CodeConflict, Message: fmt.Sprintf(
				"ConflictingRegistration: route %s is already registered by %s (pid %d)", u, re.workers[0].name, re.workers[0].pid)}
		}
	}
	var opened []int
	for _, u := range uris {
		if _, ok := d.ports[u.Port]; ok {
			continue
		}
		p, err := d.openPort(u.Port)
		if err != nil {
			for _, port := range opened {
				d.ports[port].close()
				delete(d.ports, port)
			}
			return nil, &control.Error{Code: control.CodePortInUse, Message: err.Error()}
		}
		d.ports[u.Port] = p
		opened = append(opened, u.Port)
	}
	for _, u := range uris {
		re, ok := d.routes.Get(u)
		if !ok {
			if re, ok = d.departed.Get(u); ok {
				d.reviveLocked(re)
			} else {
				re = &routeEntry{uri: u}
			}
			if err := d.routes.Insert(u, re); err != nil { // checked above; refuse rather than crash
				return nil, &control.Error{Code: control.CodeBadRoute, Message: err.Error()}
			}
			d.m.urisRegistered.Inc()
		}
		re.service, re.name = w.service, w.name
		re.workers = append(re.workers, w)
		w.routes = append(w.routes, re)
	}
	d.workers[w.id] = w
	d.m.registrations.Inc()
	return w, nil
}

// backoffKey identifies a worker for compat's re-registration back-off.
func backoffKey(name string, uid int) string { return fmt.Sprintf("%s/uid:%d", name, uid) }

// unregister drops some of w's own routes.
func (d *Daemon) unregister(w *registration, routes []string) *control.Error {
	d.mu.Lock()
	var drop []*routeEntry
	seen := map[string]bool{}
	for _, s := range routes {
		u, err := route.Parse(s)
		if err != nil {
			d.mu.Unlock()
			return &control.Error{Code: control.CodeBadRoute, Message: err.Error()}
		}
		if seen[u.Key()] {
			continue
		}
		seen[u.Key()] = true
		re, ok := d.routes.Get(u)
		if !ok || !contains(re.workers, w) {
			d.mu.Unlock()
			return &control.Error{Code: control.CodeNotOwner, Message: fmt.Sprintf("route %s is not registered by this worker", u)}
		}
		drop = append(drop, re)
	}
	for _, re := range drop {
		re.workers = remove(re.workers, w)
		w.routes = remove(w.routes, re)
		if len(re.workers) == 0 {
			d.orphanLocked(re)
		}
	}
	d.mu.Unlock()
	return nil
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func remove[T comparable](s []T, v T) []T {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid:%d", uid)
}

func accountName(uid uint32) string {
	if n := userName(uid); n != fmt.Sprintf("uid:%d", uid) {
		return fmt.Sprintf("user %s (uid %d)", n, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
