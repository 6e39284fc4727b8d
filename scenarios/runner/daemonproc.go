package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/daemon"
)

// daemonProc is the run's daemon as faults see it: restart replaces the
// process.
type daemonProc struct {
	o   *one
	cfg string

	mu     sync.Mutex
	cur    *Child // nil while a restart has none running
	gen    int
	failed bool // cur did not start serving (an error says so already)
}

func (d *daemonProc) current() *Child {
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
		return c.Pid()
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

// start runs a daemon, waits until it answers status, keeps that status
// (the first of the process) and returns it.
func (d *daemonProc) start(ctx context.Context, name string) (*daemon.Status, error) {
	c, err := d.o.st.start(name, d.o.daemonNS, "serve", "--config", d.cfg)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cur, d.failed = c, false
	d.mu.Unlock()
	st, err := d.o.waitStatus(ctx, readyTimeout, func(*daemon.Status) bool { return true })
	if err != nil {
		d.mu.Lock()
		d.failed = true
		d.mu.Unlock()
		return nil, fmt.Errorf("the daemon did not start: %w", err)
	}
	d.o.keep(st)
	return st, nil
}

// Restart stops the daemon with SIGTERM (its last status kept for the
// ledger), waits downtime and starts another; the workers register again
// by themselves. It gives up when the run stops being live (Ctrl-C), so
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
	d.o.fdBase = -1
	d.o.mu.Unlock()
	if err := old.Stop(syscall.SIGTERM, stopGrace); err != nil {
		return fmt.Errorf("the daemon exited with %s on SIGTERM", exitText(err))
	}
	// Its ledger at exit, shutdown outcomes included, is in its last log
	// line; the status before SIGTERM stands if the line is missing.
	if last != nil {
		if l, ok := stoppedLedger(filepath.Join(d.o.st.logs, old.Name+".log")); ok {
			final := *last
			final.Ledger = l
			d.o.keep(&final)
		}
	}
	d.o.event("runner", "daemon-stopped", fmt.Sprintf("pid %d", old.Pid()))
	if !faults.SleepUntil(d.o.live, time.Now().Add(downtime)) {
		return d.o.live.Err()
	}
	if _, err := d.start(d.o.live, fmt.Sprintf("daemon-%d", gen+1)); err != nil {
		return err
	}
	d.o.event("runner", "daemon-started", fmt.Sprintf("pid %d", d.pid()))
	// Tracked with the watchers, so that it has ended (with the run's
	// liveness) before the run is evaluated.
	d.o.watchers.Go(func() { d.rebase(gen) })
	return nil
}

// rebase takes the new daemon's fd baseline once every worker registered
// again, unless another restart came first or the run ends.
func (d *daemonProc) rebase(gen int) {
	want := d.o.workerCount
	if _, err := d.o.waitStatus(d.o.live, readyTimeout, func(st *daemon.Status) bool { return len(st.Workers) >= want }); err != nil {
		return
	}
	fds := d.settledFDs()
	d.mu.Lock()
	same := d.gen == gen
	d.mu.Unlock()
	d.o.mu.Lock()
	defer d.o.mu.Unlock()
	if same && fds >= 0 {
		d.o.fdBase = fds
	}
}

// stoppedLedger reads a daemon's ledger at exit from its log: the
// "portshare daemon stopped" line, whose ledger.KEY=N fields are accepted,
// open and the outcomes. It is the last line, or near it: only the end of
// the log is read.
func stoppedLedger(logPath string) (daemon.LedgerSnapshot, bool) {
	lines, err := lastLines(logPath)
	if err != nil {
		return daemon.LedgerSnapshot{}, false
	}
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
