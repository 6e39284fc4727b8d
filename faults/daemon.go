package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A Process is the daemon as daemon faults see it: whoever runs it (the
// scenario runner, a test) implements it.
type Process interface {
	// Pid is the daemon's current process id; it changes on Restart.
	Pid() int
	// Restart stops the daemon, waits downtime, and starts it again; it
	// returns once the new daemon serves (workers re-register by
	// themselves).
	Restart(downtime time.Duration) error
}

// Injector applies daemon faults (pause, restart, nofile) to a Process
// and, given a Netns, the network fault netem, each on its schedule.
type Injector struct {
	proc  Process
	netns *Netns
	specs []Spec
	log   *Log

	// procMu is held for writing through a restart and for reading while
	// a fault acts on the process, so that no fault meets a daemon half
	// stopped or half started: one due during a restart waits for it.
	procMu sync.RWMutex
}

// NewInjector checks specs (of Kind Daemon, or Network when netns is not
// nil) and returns their injector. proc may be nil when there are only
// network faults.
func NewInjector(proc Process, netns *Netns, specs []Spec, log *Log) (*Injector, error) {
	for _, s := range specs {
		switch {
		case s.Kind == Daemon && proc == nil:
			return nil, fmt.Errorf("fault %q needs the daemon's process", s)
		case s.Kind == Daemon:
		case s.Kind == Network && netns == nil:
			return nil, fmt.Errorf("fault %q needs the client and the daemon in network namespaces", s)
		case s.Kind != Network:
			return nil, fmt.Errorf("fault %q is a %s fault, not a daemon or network fault", s, s.Kind)
		}
	}
	for i, a := range specs {
		for _, b := range specs[i+1:] {
			if clash(a, b) && overlap(a, b) {
				return nil, fmt.Errorf("faults %q and %q overlap in time: one would undo the other (give them windows apart)", a, b)
			}
		}
	}
	return &Injector{proc: proc, netns: netns, specs: specs, log: log}, nil
}

// clash reports whether a and b cannot be in effect at once: two of the
// same fault save and restore the same state, and a restart replaces the
// process that a pause or a lowered limit acts on (netem acts on the link,
// which a restart leaves alone).
func clash(a, b Spec) bool {
	restart := a.Name == "restart" || b.Name == "restart"
	return a.Name == b.Name || (restart && a.Kind == Daemon && b.Kind == Daemon)
}

// window is when s is in effect, relative to the start; ok is false for
// a fault that lasts to the end.
func window(s Spec) (from, to time.Duration, ok bool) {
	switch {
	case s.Name == "pause" && s.For == 0:
		return s.At, s.At + defaultPause, true
	case s.Name == "restart":
		return s.At, s.At + s.For + time.Nanosecond, true // the stop itself takes time
	}
	to, ok = s.End()
	return s.At, to, ok
}

// overlap reports whether the windows of a and b meet. Windows that only
// touch count: the undo of one and the apply of the other would be due at
// the same moment, in either order.
func overlap(a, b Spec) bool {
	af, at, aok := window(a)
	bf, bt, bok := window(b)
	return (!aok || bf <= at) && (!bok || af <= bt)
}

// defaultPause is how long a pause without for= lasts: to the end would
// leave the daemon stopped through the run's teardown.
const defaultPause = time.Second

// Run applies every fault at its at= (relative to start) and undoes it
// after its for= (a pause without one lasts 1s), concurrently, and returns
// when all are done or ctx is. However Run returns, a fault it applied is
// undone first: a paused daemon is continued, a lowered limit restored,
// netem removed. (Only a SIGKILL of the process running Run can leave a
// fault in place.) It returns the errors of faults that could not be
// applied or undone.
func (in *Injector) Run(ctx context.Context, start time.Time) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, s := range in.specs {
		wg.Go(func() {
			if err := in.run(ctx, start, s); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("fault %q: %w", s, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run applies one fault: wait for at, apply, wait for the end (or ctx),
// undo.
func (in *Injector) run(ctx context.Context, start time.Time, s Spec) error {
	if !SleepUntil(ctx, start.Add(s.At)) {
		return nil
	}
	if s.Name == "restart" {
		in.procMu.Lock()
		defer in.procMu.Unlock()
		in.log.Add(s, Start, fmt.Sprintf("stopping pid %d", in.proc.Pid()))
		if err := in.proc.Restart(s.For); err != nil {
			in.log.Add(s, End, "restart failed: "+err.Error())
			return err
		}
		in.log.Add(s, End, fmt.Sprintf("serving again as pid %d", in.proc.Pid()))
		return nil
	}
	in.procMu.RLock() // not while a restart is under way
	undo, detail, err := in.apply(s)
	in.procMu.RUnlock()
	if err != nil {
		in.log.Add(s, Instant, "not applied: "+err.Error())
		return err
	}
	in.log.Add(s, Start, detail)
	if _, end, ok := window(s); ok {
		SleepUntil(ctx, start.Add(end))
	} else {
		<-ctx.Done()
	}
	in.procMu.RLock()
	err = undo()
	in.procMu.RUnlock()
	detail = "undone"
	if err != nil {
		detail = "undo failed: " + err.Error()
	}
	in.log.Add(s, End, detail)
	return err
}

// apply applies s now and returns how to undo it.
func (in *Injector) apply(s Spec) (undo func() error, detail string, err error) {
	switch s.Name {
	case "pause":
		pid := in.proc.Pid()
		if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
			return nil, "", err
		}
		return func() error { return unix.Kill(pid, unix.SIGCONT) }, fmt.Sprintf("SIGSTOP pid %d", pid), nil
	case "nofile":
		return lowerNOFILE(in.proc.Pid(), s)
	case "netem":
		if err := in.netns.ApplyNetem(s); err != nil {
			return nil, "", err
		}
		return in.netns.ClearNetem, "netem on", nil
	}
	return nil, "", fmt.Errorf("no injector for %s", s.Name)
}

// lowerNOFILE lowers pid's soft RLIMIT_NOFILE to limit= (default: the
// descriptors it has open now + 8). Only the soft limit moves, so the old
// one can be restored without privilege.
func lowerNOFILE(pid int, s Spec) (undo func() error, detail string, err error) {
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		return nil, "", err
	}
	limit := uint64(s.Int("limit", 0))
	open, openErr := OpenFDs(pid)
	if !s.Has("limit") {
		if openErr != nil {
			return nil, "", openErr
		}
		limit = uint64(open + 8)
	}
	lim := unix.Rlimit{Cur: min(limit, old.Max), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		return nil, "", err
	}
	restore := func() error { return unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil) }
	detail = fmt.Sprintf("RLIMIT_NOFILE of pid %d %d -> %d", pid, old.Cur, lim.Cur)
	if openErr == nil {
		detail += fmt.Sprintf(" (%d open)", open)
	}
	return restore, detail, nil
}

// OpenFDs counts the descriptors pid has open.
func OpenFDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// SleepUntil waits until t or until ctx is done, and reports whether t
// came: faults and whoever times things beside them (the scenario
// runner's loads) wait the same way.
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
