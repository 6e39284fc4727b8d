package runner

import (
	"context"
	"math"
	"slices"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
	"github.com/portshare/portshare/sharer/daemon"
)

// keep remembers a daemon process's latest status: its ledger is what the
// run reports for that process. Statuses are fetched concurrently (the
// sampler, a restart, the final one), so one may arrive after a later
// one: the ledger only grows, and an older status is not kept.
func (o *one) keep(st *daemon.Status) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old, ok := o.final[st.PID]
	if !ok {
		o.order = append(o.order, st.PID)
	} else if st.Ledger.Accepted < old.Ledger.Accepted || sum(st.Ledger.Outcomes) < sum(old.Ledger.Outcomes) {
		return
	}
	o.final[st.PID] = st
}

// totals sums a counter over every daemon process of the run; o.mu is
// held.
func (o *one) totals(f func(*daemon.Status) uint64) uint64 {
	var t uint64
	for _, st := range o.final {
		t += f(st)
	}
	return t
}

// sample records the daemon's state every sampleEvery until ctx ends.
func (o *one) sample(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		// Descriptors before the status: the daemon closes its end of the
		// status connection after replying, and a count taken just after
		// could include it.
		fds := o.d.fds()
		if st, err := o.status(statusTimeout); err == nil {
			s := results.Sample{T: now.Sub(o.epoch).Seconds(), PID: st.PID, Pending: st.Pending, Queued: st.Queued,
				Inflight: st.Inflight, Workers: len(st.Workers), Open: st.Ledger.Open, FDs: fds}
			for _, q := range st.Listen {
				s.ListenQueue += q.Queued
			}
			o.keep(st)
			// The cumulative counts and the sample under one lock, so
			// that they are of one moment and samples stay in order.
			o.mu.Lock()
			s.Accepted = o.totals(func(st *daemon.Status) uint64 { return st.Ledger.Accepted })
			s.Dispatched = o.totals(func(st *daemon.Status) uint64 { return st.Ledger.Outcomes["dispatched"] })
			s.Leaked = o.totals(func(st *daemon.Status) uint64 { return st.Ledger.Outcomes["dispatch_timeout"] })
			o.samples = append(o.samples, s)
			o.mu.Unlock()
		} else if pid := o.d.pid(); pid > 0 {
			// A daemon that cannot answer (paused) still has a listen
			// queue, and it is the one filling: read it from the kernel.
			if qs, qerr := faults.ListenQueues(pid, o.port); qerr == nil {
				s := results.Sample{T: now.Sub(o.epoch).Seconds(), PID: pid, FDs: fds, Unanswered: true}
				for _, q := range qs {
					s.ListenQueue += q.Queued
				}
				o.mu.Lock()
				if n := len(o.samples); n > 0 {
					last := o.samples[n-1]
					s.Accepted, s.Dispatched, s.Leaked = last.Accepted, last.Dispatched, last.Leaked
				}
				o.samples = append(o.samples, s)
				o.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// evaluate computes the run's metrics and checks its expectations.
func (o *one) evaluate() {
	run := o.run
	o.mu.Lock()
	defer o.mu.Unlock()
	run.Samples = o.samples
	run.Events = sortedEvents(o.events)
	for _, pid := range o.order {
		st := o.final[pid]
		run.Ledgers = append(run.Ledgers, results.Ledger{PID: pid, Accepted: st.Ledger.Accepted, Open: st.Ledger.Open, Outcomes: st.Ledger.Outcomes})
	}
	m := run.Metrics
	for _, n := range scenarios.MetricNames {
		m[n.Name] = 0 // every metric, zero or not, as the format promises
	}
	// The loads' session latencies, merged into a copy of the first: a
	// load's histogram is its result's own, cached by Histogram.
	var hist *hdr.Histogram
	for _, l := range run.Load {
		if l == nil {
			continue
		}
		for k, v := range l.Outcomes {
			run.Outcomes[k] += v
		}
		m["late_sends"] += float64(l.LateSends)
		if ph := l.Phases[loadgen.PhaseSession]; ph != nil {
			if h, err := ph.Histogram(); err == nil {
				if hist == nil {
					hist = hdr.Import(h.Export())
				} else {
					hist.Merge(h)
				}
			}
		}
	}
	sessions := float64(sum(run.Outcomes))
	m["sessions"] = sessions
	m["ok"] = float64(run.Outcomes["ok"])
	m["errors"] = sessions - m["ok"]
	if sessions > 0 {
		m["error_rate"] = m["errors"] / sessions
	}
	if window := loadWindow(run.Load); window > 0 {
		m["throughput"] = m["ok"] / window
	}
	if hist != nil {
		for name, q := range map[string]float64{"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "p999_ms": 99.9} {
			m[name] = float64(hist.ValueAtQuantile(q)) / 1000
		}
		m["max_ms"] = float64(hist.Max()) / 1000
	}
	for _, name := range daemon.OutcomeNames() {
		m[name] = float64(o.totals(func(st *daemon.Status) uint64 { return st.Ledger.Outcomes[name] }))
	}
	m["leaked_handles"] = m["dispatch_timeout"]
	m["evictions"] = float64(o.totals(func(st *daemon.Status) uint64 { return uint64(counter(st, "workers_evicted_total")) }))
	for _, s := range run.Samples {
		m["max_pending"] = math.Max(m["max_pending"], float64(s.Pending))
		m["max_queued"] = math.Max(m["max_queued"], float64(s.Queued))
	}
	m["open_after_drain"] = float64(o.openAfterDrain)
	m["listen_overflows"] = float64(run.TCPExt["ListenOverflows"])
	m["listen_drops"] = float64(run.TCPExt["ListenDrops"])
	for _, f := range run.Findings {
		switch f.Kind {
		case "ledger":
			m["ledger_violations"]++
		case "fd":
			m["fd_violations"]++
		}
	}
	m["findings"] = float64(len(run.Findings))
	run.Pass = len(run.Findings) == 0 && run.Error == ""
	for _, a := range o.s.Assert {
		if !a.Applies(o.s, o.plan.Cell) {
			continue
		}
		for _, x := range a.Expect {
			v := x.Measure(m, run.Outcomes)
			ok := x.Holds(v)
			run.Checks = append(run.Checks, results.Check{Where: a.String(), Expect: x.Text, Value: v, Pass: ok})
			run.Pass = run.Pass && ok
		}
	}
}

// loadWindow is how long, in seconds, at least one load was sending: the
// union of the loads' send windows. Loads one after another (a second
// burst at: later) add up; loads side by side count once.
func loadWindow(loads []*loadgen.Result) float64 {
	type span struct{ from, to time.Time }
	var spans []span
	for _, l := range loads {
		if l != nil && l.Window > 0 {
			spans = append(spans, span{l.Started, l.Started.Add(l.Window.D())})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var end time.Time
	for _, s := range spans {
		if s.from.Before(end) {
			s.from = end
		}
		if s.to.After(s.from) {
			total += s.to.Sub(s.from)
			end = s.to
		}
	}
	return total.Seconds()
}

// counter sums a labelled or plain counter of a status document.
func counter(st *daemon.Status, name string) float64 {
	switch v := st.Counters[name].(type) {
	case float64:
		return v
	case map[string]any:
		t := 0.0
		for _, x := range v {
			if f, ok := x.(float64); ok {
				t += f
			}
		}
		return t
	}
	return 0
}
