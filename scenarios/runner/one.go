package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/daemon"
)

// readyTimeout bounds the wait for the daemon to serve and the workers
// to register (a variable so that tests can shorten it).
var readyTimeout = 15 * time.Second

// Timing of a run's phases.
const (
	sampleEvery   = 200 * time.Millisecond // daemon state sampling
	statusTimeout = 250 * time.Millisecond // a sample of a paused daemon is skipped
	stopGrace     = 10 * time.Second       // SIGTERM to SIGKILL
	fdSettle      = 3 * time.Second        // descriptors back to baseline after the drain
	loadSlack     = 30 * time.Second       // beyond a load's own bounds before it is stopped
)

// one is a single run: a cell's plan, one repetition.
type one struct {
	r      *Runner
	s      *scenarios.Scenario
	plan   *scenarios.Plan
	rep    int
	budget time.Duration // from starting the workers to the epoch
	ready  time.Duration // how long the workers took to register

	run    *results.Run
	st     *starter
	d      *daemonProc
	socket string

	mu       sync.Mutex
	workers  []*child
	watchers sync.WaitGroup         // one watch per worker; teardown waits for them
	final    map[int]*daemon.Status // each daemon process's last status
	order    []int                  // daemon pids in start order
	samples  []results.Sample
	events   []faults.Event
	restarts int
	// base is the fd check's baseline: the daemon's descriptors and
	// registered workers before the load, or after the last restart once
	// every worker registered again (ok false until then).
	base struct {
		fds, workers int
		ok           bool
	}
	workerCount int // worker processes the run started

	openAfterDrain int
}

// seed is the random seed of the n-th worker process or load (from 1)
// of this repetition, for the draws a fault or the Poisson arrivals make
// where the scenario names no seed: each process draws its own, the same
// in every cell (so cells differ by their settings, not by luck) and in
// every sweep with the same Runner.Seed, and each repetition draws
// afresh. (At most 256 workers and 16 loads: the ranges never meet.)
func (o *one) seed(n int) uint64 {
	return (max(o.r.Seed, 1)-1)*1_000_000 + uint64(o.rep-1)*1000 + uint64(n)
}

// nextBudget is the start budget of the next run: room for the workers to
// register twice as slowly as they did here, within bounds.
func (o *one) nextBudget() time.Duration {
	return min(max(2*o.ready+300*time.Millisecond, 500*time.Millisecond), 5*time.Second)
}

func (o *one) do(ctx context.Context) *results.Run {
	c := o.plan.Cell
	o.run = &results.Run{
		Format: results.RunFormat, Scenario: o.s.Name, Cell: c.Index, Repetition: o.rep,
		Label: c.Label(), Values: c.Values, Started: time.Now().UTC(),
		Outcomes: map[string]int64{}, Metrics: map[string]float64{},
	}
	o.run.Host, _ = os.Hostname()
	o.final = map[int]*daemon.Status{}
	err := o.execute(ctx)
	if err != nil && ctx.Err() == nil {
		o.run.Error = err.Error()
		o.finding("setup", "%v", err)
	}
	o.run.Finished = time.Now().UTC()
	o.evaluate()
	return o.run
}

func (o *one) finding(kind, format string, a ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run.Findings = append(o.run.Findings, results.Finding{Kind: kind, Detail: fmt.Sprintf(format, a...)})
}

func (o *one) event(source, name, detail string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, faults.Event{Time: time.Now().UTC(), Name: name, Phase: faults.Instant, Source: source, Detail: detail})
}

// execute sets the run up, runs the load, checks and tears down.
func (o *one) execute(ctx context.Context) (err error) {
	tmp, err := tempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logs := filepath.Join(o.r.Out, "logs", fmt.Sprintf("cell-%03d-rep-%d", o.plan.Cell.Index, o.rep))
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	o.st = &starter{exe: o.r.Exe, env: o.r.Env, logs: logs}
	listen, host, daemonNS, clientNS := "127.0.0.1", "127.0.0.1", "", ""
	if o.s.Netns {
		n, err := faults.NewNetns()
		if err != nil {
			return setupf("network namespaces: %v", err)
		}
		defer n.Close()
		o.st.netns = n
		listen, host = n.DaemonAddr().String(), n.DaemonAddr().String()
		daemonNS, clientNS = n.Daemon(), n.Client()
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	o.run.Port = port
	o.socket = filepath.Join(tmp, "portshare.sock")
	cfg := filepath.Join(tmp, "portshare.yaml")
	if err := os.WriteFile(cfg, o.plan.ConfigYAML(o.socket, []string{listen}), 0o644); err != nil {
		return err
	}
	o.d = &daemonProc{o: o, ctx: ctx, ns: daemonNS, cfg: cfg}
	// Teardown is due from the moment the daemon is started: a daemon that
	// never answers (or a Ctrl-C while it starts) must not outlive the run.
	defer o.teardown()
	if err := o.d.start(ctx, "daemon"); err != nil {
		return err
	}
	if raw, err := control.FetchStatus(o.socket, time.Second); err == nil {
		var st struct {
			Config json.RawMessage `json:"config"`
		}
		if json.Unmarshal(raw, &st) == nil {
			o.run.Config = st.Config
		}
	}

	// Workers, with the epoch their faults count from.
	begin := time.Now()
	epoch := begin.Add(o.budget)
	o.run.Epoch = epoch.UTC()
	total := 0
	for _, g := range o.plan.Workers {
		for i := 1; i <= g.Count; i++ {
			name := fmt.Sprintf("worker-%s-%d", g.Name, i)
			args := []string{"worker", "--control-socket", o.socket, "--name", g.Name, "--mode", g.Mode,
				"--max-inflight", strconv.Itoa(g.MaxInflight)}
			for _, r := range g.Routes {
				args = append(args, "--route", expand(r, port))
			}
			for _, f := range g.Faults {
				args = append(args, "--fault", f.WithSeed(o.seed(total+1)).String())
			}
			if len(g.Faults) > 0 {
				args = append(args, "--fault-events", filepath.Join(logs, name+".events"), "--fault-epoch", epoch.UTC().Format(time.RFC3339Nano))
			}
			w, err := o.st.start(name, daemonNS, args...)
			if err != nil {
				return err
			}
			o.mu.Lock()
			o.workers = append(o.workers, w)
			o.mu.Unlock()
			o.watchers.Go(func() { o.watch(w, g) })
			total++
		}
	}
	// A worker that exits before registering (a refused route, say) ends
	// the wait at once, and its log is the one that says why.
	_, err = o.waitStatus(ctx, readyTimeout, func(st *daemon.Status) bool {
		return len(st.Workers) >= total || o.exitedWorker() != nil
	})
	if w := o.exitedWorker(); w != nil {
		return setupf("%s exited before the workers registered: %s (log: %s)", w.name, exitText(w.err), tail(filepath.Join(logs, w.name+".log"), 2))
	}
	if err != nil {
		return setupf("the workers did not register: %v (log: %s)", err, tail(filepath.Join(logs, "worker-"+o.plan.Workers[0].Name+"-1.log"), 2))
	}
	o.ready = time.Since(begin)

	// Baselines.
	base, err := o.waitStatus(ctx, readyTimeout, func(*daemon.Status) bool { return true })
	if err != nil {
		return err
	}
	fdBase := o.d.settledFDs()
	o.mu.Lock()
	o.base.fds, o.base.workers, o.base.ok = fdBase, len(base.Workers), true
	o.workerCount = total
	o.mu.Unlock()
	tcpBefore, tcpErr := faults.ReadTCPExt(o.d.pid())

	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); o.sample(sctx, epoch) }()
	defer func() { stopSampling(); <-sampled }()

	if !sleepCtx(ctx, epoch) {
		return ctx.Err()
	}
	if late := time.Since(epoch); late > 50*time.Millisecond {
		o.event("runner", "late-start", fmt.Sprintf("the load started %s after the epoch: the workers took %s to register", late.Round(time.Millisecond), o.ready.Round(time.Millisecond)))
	}

	// Daemon and network faults, and the loads.
	fctx, stopFaults := context.WithCancel(ctx)
	var faultLog *faults.Log
	faultsDone := make(chan error, 1)
	if len(o.s.Faults) > 0 {
		faultLog = faults.NewLog("runner", nil, nil)
		inj, err := faults.NewInjector(o.d, o.st.netns, o.s.Faults, faultLog)
		if err != nil {
			stopFaults()
			return setupf("%v", err)
		}
		go func() { faultsDone <- inj.Run(fctx, epoch) }()
	} else {
		faultsDone <- nil
	}
	o.run.Load = make([]*loadgen.Result, len(o.plan.Load))
	var wg sync.WaitGroup
	var loadErrs = make([]error, len(o.plan.Load))
	for i, l := range o.plan.Load {
		wg.Go(func() { o.run.Load[i], loadErrs[i] = o.load(ctx, i, l, host, port, clientNS, logs, epoch) })
	}
	wg.Wait()
	stopFaults()
	if ferr := <-faultsDone; ferr != nil {
		o.finding("fault", "%v", ferr)
	}
	if faultLog != nil {
		o.mu.Lock()
		o.events = append(o.events, faultLog.Events()...)
		o.mu.Unlock()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i, lerr := range loadErrs {
		if lerr != nil {
			o.finding("process", "load %d: %v", i, lerr)
		}
	}

	// Drain, then the ledger and descriptor checks.
	drained, derr := o.waitStatus(ctx, o.s.Drain, func(st *daemon.Status) bool {
		return st.Ledger.Open == 0 && st.Pending == 0 && st.Queued == 0
	})
	stopSampling()
	<-sampled
	if ctx.Err() != nil {
		return ctx.Err()
	}
	final, err := o.status(time.Second)
	if err != nil {
		o.finding("process", "the daemon did not answer after the load: %v", err)
	} else {
		o.keep(final)
		l := final.Ledger
		// Every daemon process's ledger: a restarted one's last status too.
		o.mu.Lock()
		var unbalanced []string
		for _, pid := range o.order {
			if msg := ledgerImbalance(o.final[pid].Ledger); msg != "" {
				unbalanced = append(unbalanced, fmt.Sprintf("pid %d: %s", pid, msg))
			}
		}
		o.mu.Unlock()
		for _, msg := range unbalanced {
			o.finding("ledger", "the ledger does not balance: %s", msg)
		}
		if derr != nil || drained == nil {
			// Not a finding: compat's queued connections never expire,
			// so a slow worker can hold them past any drain.
			o.event("runner", "drain-incomplete", fmt.Sprintf("%d connections still open (%d pending, %d queued) %s after the load", l.Open, final.Pending, final.Queued, o.s.Drain))
		}
		o.openAfterDrain = int(min(l.Open, l.Accepted)) // a wrapped Open is a ledger finding above
		o.checkFDs(final)
	}
	if tcpErr == nil {
		if after, err := faults.ReadTCPExt(o.d.pid()); err == nil {
			o.run.TCPExt = after.Sub(tcpBefore)
		}
	}
	return nil
}

// checkFDs compares the daemon's descriptors with its baseline: one
// control connection fewer for each worker gone, one more for each
// connection still open. After a restart the baseline is the new
// process's, taken once every worker registered again.
func (o *one) checkFDs(st *daemon.Status) {
	o.mu.Lock()
	b, restarted := o.base, o.restarts > 0
	o.mu.Unlock()
	base, workersAtBase := b.fds, b.workers
	fc := &o.run.FDs
	fc.Baseline = base
	allowed := func(st *daemon.Status) int {
		return base - max(workersAtBase-len(st.Workers), 0) + int(min(st.Ledger.Open, st.Ledger.Accepted))
	}
	fc.Allowed = allowed(st)
	if !b.ok {
		fc.Note = "the daemon was restarted and its workers did not all register again: no baseline for the new process"
		fc.After = o.d.fds()
		return
	}
	if restarted {
		fc.Note = "baseline of the restarted daemon, once every worker registered again"
	}
	fc.Checked = true
	deadline := time.Now().Add(fdSettle)
	for {
		// Count first, then ask for the status the count is judged by:
		// the daemon closes its end of a status connection only after
		// the reply, so a count taken just after a status may include
		// it. And the status is asked for again each time, because a
		// worker evicted by compat keeps running and registers again
		// after its back-off, bringing its control connection back.
		fc.After = o.d.fds()
		if now, err := o.status(time.Second); err == nil {
			st = now
			fc.Allowed = allowed(st)
		}
		if fc.After >= 0 && fc.After <= fc.Allowed {
			return
		}
		if time.Now().After(deadline) {
			o.finding("fd", "the daemon holds %d descriptors %s after the drain; its baseline was %d (%d allowed with %d of %d workers left and %d connections open)",
				fc.After, fdSettle, base, fc.Allowed, len(st.Workers), workersAtBase, st.Ledger.Open)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ledgerImbalance says how a ledger fails to balance (accepted =
// outcomes + open), or "" if it balances. The daemon derives open as
// accepted − outcomes in unsigned arithmetic, so adding them back always
// gives accepted: an outcome recorded twice shows only as more outcomes
// than accepts, which wraps open around to a huge value.
func ledgerImbalance(l daemon.LedgerSnapshot) string {
	out := sumOutcomes(l.Outcomes)
	if out > l.Accepted || l.Accepted-out != l.Open {
		return fmt.Sprintf("accepted %d, outcomes %d, open %d", l.Accepted, out, int64(l.Open))
	}
	return ""
}

// load runs one load process from epoch + its at, and reads its result.
func (o *one) load(ctx context.Context, i int, l scenarios.Load, host string, port int, ns, logs string, epoch time.Time) (*loadgen.Result, error) {
	if !sleepCtx(ctx, epoch.Add(l.At)) {
		return nil, nil
	}
	out := filepath.Join(logs, fmt.Sprintf("load-%d.json", i))
	args := []string{"load", "--target", expandHost(l.Target, host, port), "--json", out,
		"--timeout", l.Timeout.String(), "--connect-timeout", l.ConnectTimeout.String()}
	if l.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(l.Rate, 'g', -1, 64), "--arrival", l.Arrival,
			"--seed", strconv.FormatUint(o.seed(i+1), 10))
	} else {
		args = append(args, "--concurrency", strconv.Itoa(l.Concurrency))
	}
	if l.Count > 0 {
		args = append(args, "--count", strconv.FormatInt(l.Count, 10))
	} else {
		args = append(args, "--duration", l.Duration.String())
	}
	if l.Messages != 1 {
		args = append(args, "--messages", strconv.Itoa(l.Messages))
	}
	if l.MessageSize > 0 {
		args = append(args, "--message-size", strconv.Itoa(l.MessageSize))
	}
	if l.Method != "" {
		args = append(args, "--method", l.Method)
	}
	if l.NewConnections {
		args = append(args, "--new-connections")
	}
	if l.Connect != "" {
		args = append(args, "--connect", expandHost(l.Connect, host, port))
	}
	if l.Send != "" {
		args = append(args, "--send", l.Send)
	}
	if l.SendDelay > 0 {
		args = append(args, "--send-delay", l.SendDelay.String())
	}
	if l.Hold > 0 {
		args = append(args, "--hold", l.Hold.String())
	}
	for _, cf := range l.ClientFaults {
		args = append(args, "--client-fault", cf.Spec.WithSeed(o.seed(i+1)).String(), "--client-fault-ratio", strconv.FormatFloat(cf.Ratio, 'g', -1, 64))
	}
	c, err := o.st.start(fmt.Sprintf("load-%d", i), ns, args...)
	if err != nil {
		return nil, err
	}
	bound := l.Duration + l.Timeout + loadSlack
	if l.Count > 0 {
		bound = time.Hour
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		c.stop(syscall.SIGINT, 5*time.Second)
		return nil, ctx.Err()
	case <-time.After(bound):
		c.stop(syscall.SIGINT, 5*time.Second)
		o.finding("process", "load %d ran past %s and was stopped", i, bound)
	}
	if c.err != nil {
		return nil, fmt.Errorf("%s (%s)", exitText(c.err), tail(filepath.Join(logs, fmt.Sprintf("load-%d.log", i)), 2))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loadgen.ReadResult(f)
}

// watch records a worker's exit. An exit the runner did not ask for is
// an event; it is a finding unless the worker's faults include crash. A
// worker compat evicts is not an exit: the reference worker logs the
// eviction and registers again after the back-off.
func (o *one) watch(w *child, g scenarios.WorkerGroup) {
	<-w.done
	if w.expected() {
		return
	}
	o.event(w.name, "worker-exit", fmt.Sprintf("pid %d: %s", w.pid(), exitText(w.err)))
	if !slices.ContainsFunc(g.Faults, func(s faults.Spec) bool { return s.Name == "crash" }) {
		o.finding("process", "%s (pid %d) exited on its own: %s", w.name, w.pid(), exitText(w.err))
	}
}

// teardown stops the workers, then the daemon, and records how the
// daemon took it; then it collects the workers' fault events.
func (o *one) teardown() {
	o.mu.Lock()
	workers := slices.Clone(o.workers)
	o.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.stop(syscall.SIGTERM, stopGrace) })
	}
	wg.Wait()
	// Every worker has exited: let their watchers record what they saw
	// before the run is evaluated (and written).
	o.watchers.Wait()
	if d := o.d.current(); d != nil {
		running := !d.exited()
		err := d.stop(syscall.SIGTERM, stopGrace)
		switch {
		case running && err != nil:
			o.finding("process", "the daemon exited with %s on SIGTERM", exitText(err))
		case !running && !o.d.startFailed():
			// A daemon that failed to start was reported as such.
			o.finding("process", "the daemon (pid %d) exited on its own: %s", d.pid(), exitText(err))
		}
	}
	for _, w := range workers {
		path := filepath.Join(o.st.logs, w.name+".events")
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		ev, err := faults.ReadEvents(f)
		f.Close()
		if err != nil {
			o.finding("process", "%s: %v", path, err)
		}
		for i := range ev {
			ev[i].Source = w.name // the process, not its group
		}
		o.mu.Lock()
		o.events = append(o.events, ev...)
		o.mu.Unlock()
	}
}

// status asks the current daemon for its status.
func (o *one) status(timeout time.Duration) (*daemon.Status, error) {
	raw, err := control.FetchStatus(o.socket, timeout)
	if err != nil {
		return nil, err
	}
	st := &daemon.Status{}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("bad status: %w", err)
	}
	return st, nil
}

// waitStatus polls the daemon until cond holds or timeout passes.
func (o *one) waitStatus(ctx context.Context, timeout time.Duration, cond func(*daemon.Status) bool) (*daemon.Status, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		st, err := o.status(time.Second)
		if err == nil && cond(st) {
			return st, nil
		}
		if err != nil {
			last = err
		}
		if d := o.d.current(); d != nil && d.exited() {
			return nil, fmt.Errorf("the daemon exited: %s (log: %s)", exitText(d.err), tail(filepath.Join(o.st.logs, d.name+".log"), 2))
		}
		if time.Now().After(deadline) {
			if last != nil {
				return nil, fmt.Errorf("timed out after %s: %v", timeout, last)
			}
			return nil, fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exitedWorker returns a worker that has exited, or nil.
func (o *one) exitedWorker() *child {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.workers {
		if w.exited() {
			return w
		}
	}
	return nil
}

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
	} else if st.Ledger.Accepted < old.Ledger.Accepted || sumOutcomes(st.Ledger.Outcomes) < sumOutcomes(old.Ledger.Outcomes) {
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
func (o *one) sample(ctx context.Context, epoch time.Time) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		// Descriptors before the status: the daemon closes its end of the
		// status connection after replying, and a count taken just after
		// could include it.
		fds := o.d.fds()
		if st, err := o.status(statusTimeout); err == nil {
			s := results.Sample{T: now.Sub(epoch).Seconds(), PID: st.PID, Pending: st.Pending, Queued: st.Queued,
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
					hist = h
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
	for _, name := range []string{"dispatched", "no_route", "protocol_failure", "receive_timeout", "queue_full", "queue_timeout", "dispatch_timeout", "dispatch_error", "shutdown"} {
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

func sumOutcomes(m map[string]uint64) uint64 { return sum(m) }

func expand(s string, port int) string { return expandHost(s, "127.0.0.1", port) }

func expandHost(s, host string, port int) string {
	return scenarios.Expand(s, host, port)
}

// tempDir makes the run's directory for its control socket and
// configuration: in the temporary directory unless a socket there would
// pass the 107 bytes a Unix socket path may have, else in /tmp.
func tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "portshare-tune-")
	if err != nil || len(filepath.Join(dir, "portshare.sock")) < 108 {
		return dir, err
	}
	os.Remove(dir)
	return os.MkdirTemp("/tmp", "portshare-tune-")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// daemonProc is the run's daemon as faults see it: restart replaces the
// process.
type daemonProc struct {
	o   *one
	ctx context.Context // the run's: a restart under way ends with it
	ns  string
	cfg string

	mu     sync.Mutex
	cur    *child // nil while a restart has none running
	gen    int
	failed bool // cur did not start serving (an error says so already)
}

func (d *daemonProc) current() *child {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

func (d *daemonProc) startFailed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// Pid is the current daemon's process id.
func (d *daemonProc) Pid() int { return d.pid() }

func (d *daemonProc) pid() int {
	if c := d.current(); c != nil {
		return c.pid()
	}
	return 0
}

// fds counts the current daemon's descriptors (-1 if it cannot).
func (d *daemonProc) fds() int {
	n, err := faults.OpenFDs(d.pid())
	if err != nil {
		return -1
	}
	return n
}

// settledFDs counts the current daemon's descriptors at rest: the least
// of a few counts over 100 ms, since the daemon may not have closed its
// end of the status connection just used (the runner's only client then).
func (d *daemonProc) settledFDs() int {
	n := d.fds()
	for range 4 {
		time.Sleep(25 * time.Millisecond)
		if m := d.fds(); m >= 0 && (n < 0 || m < n) {
			n = m
		}
	}
	return n
}

// start runs a daemon and waits until it answers status.
func (d *daemonProc) start(ctx context.Context, name string) error {
	c, err := d.o.st.start(name, d.ns, "serve", "--config", d.cfg)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.cur, d.failed = c, false
	d.mu.Unlock()
	if _, err := d.o.waitStatus(ctx, readyTimeout, func(*daemon.Status) bool { return true }); err != nil {
		d.mu.Lock()
		d.failed = true
		d.mu.Unlock()
		return setupf("the daemon did not start: %v", err)
	}
	return nil
}

// Restart stops the daemon with SIGTERM (its last status kept for the
// ledger), waits downtime and starts another; the workers register again
// by themselves. It gives up when the run's context ends (Ctrl-C), so
// that the teardown does not wait for a downtime and a start nobody
// needs; whatever it started is the current daemon, which the teardown
// stops.
func (d *daemonProc) Restart(downtime time.Duration) error {
	d.mu.Lock()
	d.gen++
	old, gen := d.cur, d.gen
	// None current until the next one starts: the old one is exiting,
	// and waitStatus must not take that for a failure of the new one.
	d.cur = nil
	d.mu.Unlock()
	if old == nil {
		return fmt.Errorf("no daemon to restart")
	}
	last, err := d.o.status(time.Second)
	if err == nil {
		d.o.keep(last)
	}
	d.o.mu.Lock()
	d.o.restarts++ // the old process is going: its fd baseline with it
	d.o.base.ok = false
	d.o.mu.Unlock()
	if err := old.stop(syscall.SIGTERM, stopGrace); err != nil {
		return fmt.Errorf("the daemon exited with %s on SIGTERM", exitText(err))
	}
	// Its ledger at exit, shutdown outcomes included, is in its last log
	// line; the status before SIGTERM stands if the line is missing.
	if last != nil {
		if l, ok := stoppedLedger(filepath.Join(d.o.st.logs, old.name+".log")); ok {
			final := *last
			final.Ledger = l
			d.o.keep(&final)
		}
	}
	d.o.event("runner", "daemon-stopped", fmt.Sprintf("pid %d", old.pid()))
	if !sleepCtx(d.ctx, time.Now().Add(downtime)) {
		return d.ctx.Err()
	}
	if err := d.start(d.ctx, fmt.Sprintf("daemon-%d", gen+1)); err != nil {
		return err
	}
	d.o.event("runner", "daemon-started", fmt.Sprintf("pid %d", d.pid()))
	go d.rebase(gen)
	return nil
}

// rebase takes the new daemon's fd baseline once every worker registered
// again, unless another restart came first or the run ends.
func (d *daemonProc) rebase(gen int) {
	d.o.mu.Lock()
	want := d.o.workerCount
	d.o.mu.Unlock()
	if _, err := d.o.waitStatus(d.ctx, readyTimeout, func(st *daemon.Status) bool { return len(st.Workers) >= want }); err != nil {
		return
	}
	fds := d.settledFDs()
	d.mu.Lock()
	same := d.gen == gen
	d.mu.Unlock()
	d.o.mu.Lock()
	defer d.o.mu.Unlock()
	if same && fds >= 0 {
		d.o.base.fds, d.o.base.workers, d.o.base.ok = fds, want, true
	}
}

// stoppedLedger reads a daemon's ledger at exit from its log: the
// "portshare daemon stopped" line, whose ledger.KEY=N fields are accepted,
// open and the outcomes.
func stoppedLedger(logPath string) (daemon.LedgerSnapshot, bool) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return daemon.LedgerSnapshot{}, false
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], `msg="portshare daemon stopped"`) {
			continue
		}
		l := daemon.LedgerSnapshot{Outcomes: map[string]uint64{}}
		found := false
		for _, f := range strings.Fields(lines[i]) {
			k, v, ok := strings.Cut(strings.TrimPrefix(f, "ledger."), "=")
			if !ok || !strings.HasPrefix(f, "ledger.") {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return daemon.LedgerSnapshot{}, false
			}
			found = true
			switch k {
			case "accepted":
				l.Accepted = n
			case "open":
				l.Open = n
			default:
				l.Outcomes[k] = n
			}
		}
		return l, found
	}
	return daemon.LedgerSnapshot{}, false
}
