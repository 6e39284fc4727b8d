package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

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
	statusTimeout = 250 * time.Millisecond // past it, a sample reads only the kernel's listen queue (Sample.Unanswered)
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
	sweep  string        // the manifest's fingerprint
	budget time.Duration // from starting the workers to the epoch
	ready  time.Duration // how long the workers took to register

	run    *results.Run
	st     *starter
	d      *daemonProc
	socket string

	// Where the run's processes run and what they share, set once the
	// daemon is up.
	port               int
	host               string // where the loads connect: the daemon's address
	daemonNS, clientNS string // "" without namespaces
	epoch              time.Time
	workerCount        int // worker processes the run started

	// live ends when the run's context does or its teardown begins:
	// nothing new (a worker restart, a daemon restart's start, a new fd
	// baseline) is begun after that.
	live     context.Context
	endLive  context.CancelFunc
	watchers sync.WaitGroup // each worker's watch, and fd baselines after restarts

	mu       sync.Mutex
	workers  []*Child
	final    map[int]*daemon.Status // each daemon process's last status
	order    []int                  // daemon pids in start order
	samples  []results.Sample
	events   []faults.Event
	restarts int
	// fdBase is the fd check's baseline: the daemon's descriptors with
	// every worker registered, before the load or after the last restart
	// (-1 while a restarted daemon has none yet).
	fdBase int

	openAfterDrain int
	registered     bool // every worker registered: the setup is over
}

// loadSeeds is the first load's seed number, above every worker's (a
// run has at most 256 workers).
const loadSeeds = 501

// seed is the random seed of the n-th worker process or load (from 1)
// of this repetition, for the draws a fault or the Poisson arrivals make
// where the scenario names no seed: each process draws its own, the same
// in every cell (so cells differ by their settings, not by luck) and in
// every sweep with the same Runner.Seed, and each repetition draws
// afresh. Workers take 1 to 256 and loads 501 to 516: they never meet.
func (o *one) seed(n int) uint64 {
	return (o.r.seed()-1)*1_000_000 + uint64(o.rep-1)*1000 + uint64(n)
}

// nextBudget is the start budget of the next run: room for the workers to
// register twice as slowly as they did here, within bounds.
func (o *one) nextBudget() time.Duration {
	return min(max(2*o.ready+300*time.Millisecond, 500*time.Millisecond), 5*time.Second)
}

func (o *one) do(ctx context.Context) *results.Run {
	c := o.plan.Cell
	o.run = &results.Run{
		Format: results.RunFormat, Scenario: o.s.Name, Sweep: o.sweep, Cell: c.Index, Repetition: o.rep,
		Label: c.Label(), Values: c.Values, Started: time.Now().UTC(),
		Outcomes: map[string]int64{}, Metrics: map[string]float64{},
	}
	o.run.Host, _ = os.Hostname()
	o.final = map[int]*daemon.Status{}
	o.live, o.endLive = context.WithCancel(ctx)
	defer o.endLive()
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
	o.host = "127.0.0.1"
	if o.s.Netns {
		n, err := faults.NewNetns()
		if err != nil {
			return fmt.Errorf("network namespaces: %w", err)
		}
		defer n.Close()
		o.st.netns = n
		o.host = n.DaemonAddr().String()
		o.daemonNS, o.clientNS = n.Daemon(), n.Client()
	}
	if o.port, err = FreePort(); err != nil {
		return err
	}
	o.run.Port = o.port
	o.socket = filepath.Join(tmp, "portshare.sock")
	cfg := filepath.Join(tmp, "portshare.yaml")
	if err := os.WriteFile(cfg, o.plan.ConfigYAML(o.socket, []string{o.host}), 0o644); err != nil {
		return err
	}
	o.d = &daemonProc{o: o, cfg: cfg}
	// Teardown is due from the moment the daemon is started: a daemon that
	// never answers (or a Ctrl-C while it starts) must not outlive the run.
	defer o.teardown()
	st, err := o.d.start(ctx, "daemon")
	if err != nil {
		return err
	}
	if b, err := json.Marshal(st.Config); err == nil {
		o.run.Config = b
	}

	// Workers, with the epoch their faults count from.
	begin := time.Now()
	o.epoch = begin.Add(o.budget)
	o.run.Epoch = o.epoch.UTC()
	total := 0
	for _, g := range o.plan.Workers {
		for i := 1; i <= g.Count; i++ {
			total++
			n := total
			w, err := o.startWorker(g, i, n, 0)
			if err != nil {
				return err
			}
			o.watchers.Go(func() { o.watch(w, g, i, n) })
		}
	}
	// A worker that exits before registering (a refused route, say) ends
	// the wait at once, and its log is the one that says why.
	_, err = o.waitStatus(ctx, readyTimeout, func(st *daemon.Status) bool {
		return len(st.Workers) >= total || o.exitedWorker() != nil
	})
	if w := o.exitedWorker(); w != nil {
		return fmt.Errorf("%s exited before the workers registered: %s (log: %s)", w.Name, exitText(w.Wait()), Tail(filepath.Join(logs, w.Name+".log"), 2))
	}
	if err != nil {
		return fmt.Errorf("the workers did not register: %w (log: %s)", err, Tail(filepath.Join(logs, "worker-"+o.plan.Workers[0].Name+"-1.log"), 2))
	}
	o.ready = time.Since(begin)
	o.mu.Lock()
	o.registered = true // from here a worker's exit is the run's, not the setup's
	o.mu.Unlock()

	// Baselines, with every worker registered.
	o.workerCount = total
	fdBase := o.d.settledFDs()
	o.mu.Lock()
	o.fdBase = fdBase
	o.mu.Unlock()
	tcpBefore, tcpErr := faults.ReadTCPExt(o.d.pid())

	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); o.sample(sctx) }()
	defer func() { stopSampling(); <-sampled }()

	if !faults.SleepUntil(ctx, o.epoch) {
		return ctx.Err()
	}
	if late := time.Since(o.epoch); late > 50*time.Millisecond {
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
			return err
		}
		go func() { faultsDone <- inj.Run(fctx, o.epoch) }()
	} else {
		faultsDone <- nil
	}
	o.run.Load = make([]*loadgen.Result, len(o.plan.Load))
	var wg sync.WaitGroup
	var loadErrs = make([]error, len(o.plan.Load))
	for i, l := range o.plan.Load {
		wg.Go(func() { o.run.Load[i], loadErrs[i] = o.load(ctx, i, l) })
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
	_, derr := o.waitStatus(ctx, o.s.Drain, func(st *daemon.Status) bool {
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
		if derr != nil {
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

// load runs one load process from epoch + its at, and reads its result.
func (o *one) load(ctx context.Context, i int, l scenarios.Load) (*loadgen.Result, error) {
	if !faults.SleepUntil(ctx, o.epoch.Add(l.At)) {
		return nil, nil
	}
	logs := o.st.logs
	out := filepath.Join(logs, fmt.Sprintf("load-%d.json", i))
	args := []string{"load", "--target", scenarios.Expand(l.Target, o.host, o.port), "--json", out,
		"--timeout", l.Timeout.String(), "--connect-timeout", l.ConnectTimeout.String()}
	if l.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(l.Rate, 'g', -1, 64), "--arrival", l.Arrival,
			"--seed", strconv.FormatUint(o.seed(loadSeeds+i), 10))
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
		args = append(args, "--connect", scenarios.Expand(l.Connect, o.host, o.port))
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
		args = append(args, "--client-fault", cf.Spec.WithSeed(o.seed(loadSeeds+i)).String(), "--client-fault-ratio", strconv.FormatFloat(cf.Ratio, 'g', -1, 64))
	}
	c, err := o.st.start(fmt.Sprintf("load-%d", i), o.clientNS, args...)
	if err != nil {
		return nil, err
	}
	// How long the load may take before it is stopped as hung.
	bound := l.Duration
	switch {
	case l.Count > 0 && l.Rate > 0:
		bound = time.Duration(float64(l.Count) / l.Rate * float64(time.Second))
	case l.Count > 0: // closed model: every session may take its timeout
		bound = min(time.Duration(l.Count)*l.Timeout/time.Duration(l.Concurrency), time.Hour)
	}
	bound += l.Timeout + loadSlack
	select {
	case <-c.Done():
	case <-ctx.Done():
		c.Stop(syscall.SIGINT, 5*time.Second)
		return nil, ctx.Err()
	case <-time.After(bound):
		c.Stop(syscall.SIGINT, 5*time.Second)
		o.finding("process", "load %d ran past %s and was stopped", i, bound)
	}
	if err := c.Wait(); err != nil {
		return nil, fmt.Errorf("%s (%s)", exitText(err), Tail(filepath.Join(logs, fmt.Sprintf("load-%d.log", i)), 2))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loadgen.ReadResult(f)
}

// watch records a worker's exit, and restarts it if its group says so,
// until the run ends. An exit the runner did not ask for is an event; it
// is a finding unless the worker's faults include crash. A worker compat
// evicts is not an exit: the reference worker logs the eviction and
// registers again after the back-off.
func (o *one) watch(w *Child, g scenarios.WorkerGroup, i, n int) {
	for restarts := 1; ; restarts++ {
		werr := w.Wait()
		if w.expected() {
			return
		}
		o.event(w.Name, "worker-exit", fmt.Sprintf("pid %d: %s", w.Pid(), exitText(werr)))
		o.mu.Lock()
		registered := o.registered
		o.mu.Unlock()
		if registered && !slices.ContainsFunc(g.Faults, func(s faults.Spec) bool { return s.Name == "crash" }) {
			o.finding("process", "%s (pid %d) exited on its own: %s", w.Name, w.Pid(), exitText(werr))
		}
		if g.Restart == 0 {
			return
		}
		select {
		case <-o.live.Done():
			return
		case <-time.After(g.Restart):
		}
		nw, err := o.startWorker(g, i, n, restarts)
		if err != nil {
			if !errors.Is(err, errTearing) {
				o.finding("process", "restarting %s: %v", w.Name, err)
			}
			return
		}
		o.event(nw.Name, "worker-restart", fmt.Sprintf("pid %d, %s after %s exited", nw.Pid(), g.Restart, w.Name))
		w = nw
	}
}

// errTearing refuses a worker restart once the run is being torn down.
var errTearing = errors.New("the run is being torn down")

// startWorker starts worker i (from 1) of group g, the n-th of the run,
// for the restarts-th time (0: the first). A restarted worker keeps the
// group's faults but crash, which would only kill it again, and writes
// its fault events to a file of its own.
func (o *one) startWorker(g scenarios.WorkerGroup, i, n, restarts int) (*Child, error) {
	name := fmt.Sprintf("worker-%s-%d", g.Name, i)
	if restarts > 0 {
		name += fmt.Sprintf("-r%d", restarts)
	}
	args := []string{"worker", "--control-socket", o.socket, "--name", g.Name, "--mode", g.Mode,
		"--max-inflight", strconv.Itoa(g.MaxInflight)}
	for _, r := range g.Routes {
		args = append(args, "--route", scenarios.Expand(r, "127.0.0.1", o.port))
	}
	faulty := false
	for _, f := range g.Faults {
		if restarts > 0 && f.Name == "crash" {
			continue
		}
		args = append(args, "--fault", f.WithSeed(o.seed(n)).String())
		faulty = true
	}
	if faulty {
		args = append(args, "--fault-events", filepath.Join(o.st.logs, name+".events"), "--fault-epoch", o.epoch.UTC().Format(time.RFC3339Nano))
	}
	// Started and listed under the lock that teardown takes to list the
	// workers, so that none starts unseen once it has.
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.live.Err() != nil {
		return nil, errTearing
	}
	w, err := o.st.start(name, o.daemonNS, args...)
	if err != nil {
		return nil, err
	}
	o.workers = append(o.workers, w)
	return w, nil
}

// teardown stops the workers, then the daemon, and records how the
// daemon took it; then it collects the workers' fault events.
func (o *one) teardown() {
	o.mu.Lock()
	o.endLive() // no worker restarts from here on
	workers := slices.Clone(o.workers)
	o.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.Stop(syscall.SIGTERM, stopGrace) })
	}
	wg.Wait()
	// Every worker has exited: let their watchers record what they saw
	// before the run is evaluated (and written).
	o.watchers.Wait()
	if d := o.d.current(); d != nil {
		running := !d.Exited()
		err := d.Stop(syscall.SIGTERM, stopGrace)
		switch {
		case running && err != nil:
			o.finding("process", "the daemon exited with %s on SIGTERM", exitText(err))
		case !running && !o.d.startFailed():
			// A daemon that failed to start was reported as such.
			o.finding("process", "the daemon (pid %d) exited on its own: %s", d.Pid(), exitText(err))
		}
	}
	for _, w := range workers {
		path := filepath.Join(o.st.logs, w.Name+".events")
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
			ev[i].Source = w.Name // the process, not its group
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
	var st *daemon.Status
	err := Poll(ctx, timeout, func() (bool, error) {
		s, err := o.status(time.Second)
		if err == nil && cond(s) {
			st = s
			return true, nil
		}
		if d := o.d.current(); d != nil && d.Exited() {
			return true, fmt.Errorf("the daemon exited: %s (log: %s)", exitText(d.Wait()), Tail(filepath.Join(o.st.logs, d.Name+".log"), 2))
		}
		return false, err
	})
	return st, err
}

// exitedWorker returns a worker that has exited, or nil.
func (o *one) exitedWorker() *Child {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.workers {
		if w.Exited() {
			return w
		}
	}
	return nil
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

// FreePort asks the kernel for a TCP port free on loopback now. Another
// process may take it before the caller binds it; a daemon that then
// fails to listen says so.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
