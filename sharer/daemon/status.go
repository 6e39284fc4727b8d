package daemon

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/route"
)

// Status is the document `portshare status --json` prints.
type Status struct {
	PID      int            `json:"pid"`
	Policy   string         `json:"policy"`
	Config   config.Config  `json:"config"`
	Ports    []int          `json:"ports"`
	Listen   []ListenQueue  `json:"listen_queues"` // every listening socket's accept queue
	Routes   []RouteStatus  `json:"routes"`
	Workers  []WorkerStatus `json:"workers"`
	Pending  int            `json:"pending"` // accepted, not yet handed off
	Queued   int            `json:"queued"`
	Inflight int            `json:"inflight"`
	Ledger   LedgerSnapshot `json:"ledger"`
	Counters map[string]any `json:"counters"` // name → value, or label value → value
}

// RouteStatus is one registered route.
type RouteStatus struct {
	URI     string   `json:"uri"`
	Worker  string   `json:"worker"` // the serving service's name
	Workers []uint64 `json:"workers"`
	Queued  int      `json:"queued"`
	State   string   `json:"state"` // "live" or "grace"
}

// WorkerStatus is one registration.
type WorkerStatus struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	PID         int      `json:"pid"`
	UID         int      `json:"uid"`
	Routes      []string `json:"routes"`
	MaxInflight int      `json:"max_inflight"`
	Inflight    int      `json:"inflight"`
	Owed        int      `json:"owed"`
}

// Status returns the daemon's current state.
func (d *Daemon) Status() Status {
	s := Status{PID: os.Getpid(), Policy: string(d.policy), Config: *d.cfg.Load(), Routes: []RouteStatus{}, Workers: []WorkerStatus{}}
	d.mu.Lock()
	for p := range d.ports {
		s.Ports = append(s.Ports, p)
	}
	list := func(state string) func(route.URI, *routeEntry) bool {
		return func(u route.URI, re *routeEntry) bool {
			rs := RouteStatus{URI: u.String(), Worker: re.name, Queued: re.queue.Len(), State: state, Workers: []uint64{}}
			for _, w := range re.workers {
				rs.Workers = append(rs.Workers, w.id)
			}
			s.Queued += rs.Queued
			s.Routes = append(s.Routes, rs)
			return true
		}
	}
	d.routes.Each(list("live"))
	d.departed.Each(list("grace"))
	for _, w := range d.workers {
		ws := WorkerStatus{ID: w.id, Name: w.name, PID: w.pid, UID: w.uid, MaxInflight: w.credit, Inflight: len(w.inflight), Owed: len(w.owed)}
		for _, re := range w.routes {
			ws.Routes = append(ws.Routes, re.uri.String())
		}
		s.Inflight += ws.Inflight
		s.Workers = append(s.Workers, ws)
	}
	d.mu.Unlock()
	sort.Ints(s.Ports)
	s.Listen = d.listenQueues()
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })
	s.Pending = int(d.pendingCount())
	s.Ledger = d.ledger.Snapshot()
	s.Counters = d.counters()
	return s
}

// listenQueues reads the accept queue of every shared port's sockets,
// sorted by address.
func (d *Daemon) listenQueues() []ListenQueue {
	qs := []ListenQueue{}
	d.mu.Lock()
	for _, pl := range d.ports {
		qs = append(qs, pl.queues()...)
	}
	d.mu.Unlock()
	sort.Slice(qs, func(i, j int) bool { return qs[i].Address < qs[j].Address })
	return qs
}

// counters flattens the portshare_ counters and gauges, prefix dropped:
// an unlabelled series is a number, a labelled one an object from label
// value to number.
func (d *Daemon) counters() map[string]any {
	out := map[string]any{}
	mfs, err := d.m.reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "portshare_") || mf.GetType().String() == "HISTOGRAM" {
			continue
		}
		vals := map[string]float64{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			vals[strings.Join(labels, ",")] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		name = strings.TrimPrefix(name, "portshare_")
		if v, ok := vals[""]; ok && len(vals) == 1 {
			out[name] = v
		} else {
			out[name] = vals
		}
	}
	return out
}

// statusChunk leaves room for the message header inside MaxMessage.
const statusChunk = control.MaxMessage - 1024

func (d *Daemon) sendStatus(cc *control.Conn) {
	doc, err := json.Marshal(d.Status())
	if err != nil {
		return
	}
	for part := 0; ; part++ {
		n := min(len(doc), statusChunk)
		last := n == len(doc)
		if cc.Send(control.TypeStatusReply, control.StatusReply{Part: part, Last: last}, doc[:n], -1, 5*time.Second) != nil || last {
			return
		}
		doc = doc[n:]
	}
}
