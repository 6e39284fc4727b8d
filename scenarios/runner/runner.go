// Package runner runs a scenario's cells against real processes: for
// each cell × repetition a fresh daemon (`portshare serve`) with its own
// control socket and configuration, the workers (`portshare worker`) and
// the loads (`portshare load`), on a free port; it applies the daemon and
// network faults on schedule, samples the daemon, checks the ledger and
// the daemon's descriptors after the load, and writes the results
// (package results) as it goes.
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
)

// Runner runs scenarios.
type Runner struct {
	Exe     string   // the portshare binary the children run
	Env     []string // added to the children's environment
	Out     string   // results directory; made if missing
	Version string   // recorded in the manifest
	// Seed chooses the random draws (fault delays, Poisson arrivals) of
	// processes whose specs name no seed: the same Seed repeats a sweep's
	// draws, another gives fresh ones. 0 means 1.
	Seed     uint64
	Progress Progress // told of each run; may be nil
}

// seed is Seed with 0 read as 1.
func (r *Runner) seed() uint64 { return max(r.Seed, 1) }

// Progress hears of a sweep's runs as they start and end.
type Progress interface {
	Begin(m *results.Manifest, runs int)
	RunStarted(c scenarios.Cell, rep int)
	RunDone(r *results.Run)
}

// Run runs every cell of s (or those in only) Repetitions times, writes
// the manifest and one run file per cell × repetition into r.Out, and
// returns them. set lists the --set flags already applied to s, for the
// manifest. A run that cannot start (a daemon that exits at once, say)
// is recorded with its error and the sweep goes on. When ctx ends, the
// run in progress is torn down without a run file, the manifest says
// the sweep was interrupted, and Run returns ctx's error with what was
// done. Whatever happens, no process, socket file or network namespace
// of a run outlives it.
func (r *Runner) Run(ctx context.Context, s *scenarios.Scenario, only []int, set []string) (*results.Manifest, []*results.Run, error) {
	cells := s.Cells()
	for k, i := range only {
		if i < 0 || i >= len(cells) {
			return nil, nil, UsageError{fmt.Errorf("--cell %d: scenario %s has cells 0 to %d", i, s.Name, len(cells)-1)}
		}
		if slices.Contains(only[:k], i) {
			return nil, nil, UsageError{fmt.Errorf("--cell %d given twice", i)}
		}
	}
	// Namespaces and netem are checked once, before the sweep, rather
	// than failing every run.
	if s.Netns {
		if err := faults.Available(); err != nil {
			return nil, nil, fmt.Errorf("scenario %s runs in network namespaces: %w", s.Name, err)
		}
	}
	if slices.ContainsFunc(s.Faults, func(f faults.Spec) bool { return f.Name == "netem" }) {
		if err := faults.NetemAvailable(); err != nil {
			return nil, nil, fmt.Errorf("scenario %s uses netem: %w", s.Name, err)
		}
	}
	if err := os.MkdirAll(r.Out, 0o755); err != nil {
		return nil, nil, err
	}
	m := r.manifest(s, cells, only, set)
	if err := r.checkOut(m, s.Repetitions); err != nil {
		return nil, nil, err
	}
	if err := results.WriteJSON(filepath.Join(r.Out, results.ManifestFile), m); err != nil {
		return nil, nil, err
	}
	todo := cells
	if len(only) > 0 {
		todo = nil
		for _, i := range only {
			todo = append(todo, cells[i])
		}
	}
	if r.Progress != nil {
		r.Progress.Begin(m, len(todo)*s.Repetitions)
	}
	var runs []*results.Run
	var err error
	budget := time.Second
sweep:
	for _, c := range todo {
		pl, perr := s.Plan(c)
		if perr != nil {
			return m, runs, perr // Parse and Set checked every cell
		}
		for rep := 1; rep <= s.Repetitions; rep++ {
			if ctx.Err() != nil {
				err = ctx.Err()
				break sweep
			}
			if r.Progress != nil {
				r.Progress.RunStarted(c, rep)
			}
			o := &one{r: r, s: s, plan: pl, rep: rep, sweep: m.Sweep, budget: budget}
			run := o.do(ctx)
			budget = o.nextBudget()
			if ctx.Err() != nil {
				err = ctx.Err()
				break sweep
			}
			if werr := results.WriteJSON(filepath.Join(r.Out, results.RunFile(c.Index, rep)), run); werr != nil {
				err = fmt.Errorf("writing the results of cell %d, repetition %d: %w", c.Index, rep, werr)
				break sweep // the manifest below still says the sweep stopped short
			}
			runs = append(runs, run)
			if r.Progress != nil {
				r.Progress.RunDone(run)
			}
		}
	}
	m.Finished = time.Now().UTC()
	m.Interrupted = err != nil
	if werr := results.WriteJSON(filepath.Join(r.Out, results.ManifestFile), m); werr != nil && err == nil {
		err = werr
	}
	return m, runs, err
}

// UsageError is an error in what Run was asked to do (cells, the results
// directory), as opposed to a failure while doing it.
type UsageError struct{ error }

func (e UsageError) Unwrap() error { return e.error }

// checkOut makes sure the results directory takes this sweep without
// losing anything: it is empty, or (for --cell) holds the same sweep
// without the runs about to be made; m then covers the cells of both.
func (r *Runner) checkOut(m *results.Manifest, reps int) error {
	old, err := results.ReadManifest(r.Out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if files, _ := results.RunFiles(r.Out); len(files) > 0 {
			return UsageError{fmt.Errorf("%s already holds results: give another --out (or --cell for cells it does not hold)", r.Out)}
		}
		return nil
	case err != nil:
		return UsageError{fmt.Errorf("%s already holds results: %v: give another --out or remove them", r.Out, err)}
	case old.Sweep != m.Sweep:
		return UsageError{fmt.Errorf("%s already holds results of another sweep: give another --out or remove them", r.Out)}
	case len(m.Only) == 0:
		return UsageError{fmt.Errorf("%s already holds results: give another --out (or --cell for cells it does not hold)", r.Out)}
	}
	for _, c := range m.Only {
		for rep := 1; rep <= reps; rep++ {
			if _, err := os.Stat(filepath.Join(r.Out, results.RunFile(c, rep))); err == nil {
				return UsageError{fmt.Errorf("%s already holds cell %d, repetition %d: give another --out", r.Out, c, rep)}
			}
		}
	}
	// The same sweep, other cells: one manifest for all of them.
	if len(old.Only) > 0 {
		m.Only = append(old.Only, m.Only...)
		slices.Sort(m.Only)
	}
	if !old.Started.IsZero() && old.Started.Before(m.Started) {
		m.Started = old.Started
	}
	return nil
}

// sweepID fingerprints what makes a sweep's runs comparable: the scenario
// as written, the --set flags, the seed and the repetitions. Run files
// carry it, so that runs of different sweeps are never read as one.
func sweepID(s *scenarios.Scenario, set []string, seed uint64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%q\x00%d\x00%d", s.Text, set, seed, s.Repetitions)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (r *Runner) manifest(s *scenarios.Scenario, cells []scenarios.Cell, only []int, set []string) *results.Manifest {
	m := &results.Manifest{
		Format: results.ManifestFormat, Scenario: s.Name, Description: s.Description, TimeScale: s.TimeScale,
		ScenarioFile: s.File, ScenarioText: string(s.Text), Set: set, Repetitions: s.Repetitions, Only: only,
		Machine: machine(), Sysctls: sysctls(), Version: r.Version, Seed: r.seed(), Started: time.Now().UTC(),
		Sweep: sweepID(s, set, r.seed()),
	}
	for _, a := range s.Axes {
		ax := results.Axis{Key: a.Key, Values: a.Values}
		if a.Presets != nil {
			ax.Presets = map[string][]scenarios.Setting{}
			for i, v := range a.Values {
				ax.Presets[v] = a.Presets[i]
			}
		}
		m.Axes = append(m.Axes, ax)
	}
	for _, c := range cells {
		m.Cells = append(m.Cells, results.Cell{Index: c.Index, Label: c.Label(), Values: c.Values, Settings: c.Settings})
	}
	for _, a := range s.Assert {
		ra := results.Assertion{Where: a.String()}
		for _, x := range a.Expect {
			ra.Expect = append(ra.Expect, x.Text)
		}
		m.Assertions = append(m.Assertions, ra)
	}
	return m
}

// Sysctls are the kernel settings that bound a listen backlog and decide
// what an overflow does, recorded with every sweep.
var Sysctls = []string{"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_syncookies"}

func sysctls() map[string]string {
	out := map[string]string{}
	for _, k := range Sysctls {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		if err != nil {
			out[k] = "unreadable"
			continue
		}
		out[k] = strings.TrimSpace(string(b))
	}
	return out
}

func machine() results.Machine {
	m := results.Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb / 1024
		}
	}
	return m
}

func sum[M ~map[K]V, K comparable, V int64 | uint64 | float64](m M) V {
	var t V
	for _, v := range m {
		t += v
	}
	return t
}

func sortedEvents(ev []faults.Event) []faults.Event {
	slices.SortStableFunc(ev, func(a, b faults.Event) int { return a.Time.Compare(b.Time) })
	return ev
}
