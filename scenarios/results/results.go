// Package results is the file format `portshare tune` writes and reports
// and comparisons read (FORMAT.md beside this file): a directory holding
// manifest.json, which says what was swept where, and one run file per
// cell × repetition, which says what happened.
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/scenarios"
)

// Format names of the two kinds of file; a reader refuses other versions.
const (
	ManifestFormat = "portshare-tune-manifest/1"
	RunFormat      = "portshare-tune-run/1"
	ManifestFile   = "manifest.json"
)

// Manifest describes a sweep: the scenario, its cells, and the machine.
type Manifest struct {
	Format       string   `json:"format"`
	Scenario     string   `json:"scenario"`
	Sweep        string   `json:"sweep"` // fingerprint of the scenario text, --set, seed and repetitions
	Description  string   `json:"description,omitempty"`
	TimeScale    string   `json:"time_scale,omitempty"`
	ScenarioFile string   `json:"scenario_file"`
	ScenarioText string   `json:"scenario_text"`
	Set          []string `json:"set,omitempty"` // --set flags, in order
	Axes         []Axis   `json:"axes"`
	Cells        []Cell   `json:"cells"`
	Repetitions  int      `json:"repetitions"`
	// Only lists the cells this invocation ran (--cell); empty means all.
	Only       []int       `json:"only,omitempty"`
	Assertions []Assertion `json:"assertions,omitempty"`

	Machine     Machine           `json:"machine"`
	Sysctls     map[string]string `json:"sysctls"`
	Version     string            `json:"version"`
	Seed        uint64            `json:"seed"` // --seed: the random draws of processes whose specs name none
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Interrupted bool              `json:"interrupted,omitempty"`
}

// Axis is one swept key and its values (preset names for a preset axis).
type Axis struct {
	Key     string                         `json:"key"`
	Values  []string                       `json:"values"`
	Presets map[string][]scenarios.Setting `json:"presets,omitempty"`
}

// Cell is one combination of the swept values.
type Cell struct {
	Index    int                 `json:"index"`
	Label    string              `json:"label"`
	Values   []scenarios.Setting `json:"values"`   // one per axis
	Settings []scenarios.Setting `json:"settings"` // everything the cell sets
}

// Assertion is a scenario assertion as text.
type Assertion struct {
	Where  string   `json:"where"`
	Expect []string `json:"expect"`
}

// Machine is where a run ran.
type Machine struct {
	Host      string `json:"host"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemoryMiB int64  `json:"memory_mib,omitempty"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Go        string `json:"go"`
}

// Run is what one cell × repetition measured.
type Run struct {
	Format     string              `json:"format"`
	Scenario   string              `json:"scenario"`
	Sweep      string              `json:"sweep"` // the manifest's: runs of one sweep only mix
	Cell       int                 `json:"cell"`
	Repetition int                 `json:"repetition"` // from 1
	Label      string              `json:"label"`
	Values     []scenarios.Setting `json:"values"`
	Host       string              `json:"host"`
	Started    time.Time           `json:"started"`
	Finished   time.Time           `json:"finished"`
	// Epoch is time zero of the run: fault times (at=) and sample times
	// count from it, and the loads start at it (plus their at).
	Epoch  time.Time       `json:"epoch"`
	Port   int             `json:"port"`
	Config json.RawMessage `json:"config,omitempty"` // the daemon's effective configuration

	Load []*loadgen.Result `json:"load"` // one per load of the scenario, in order
	// Outcomes are the normal clients' outcomes over every load.
	Outcomes map[string]int64 `json:"outcomes"`
	// Metrics holds every name of scenarios.MetricNames.
	Metrics map[string]float64 `json:"metrics"`

	Ledgers []Ledger         `json:"ledgers"` // one per daemon process (more after restarts)
	Samples []Sample         `json:"samples"`
	TCPExt  map[string]int64 `json:"tcp_ext,omitempty"` // the daemon's network namespace, over the run
	FDs     FDCheck          `json:"fds"`
	Events  []faults.Event   `json:"events"` // faults applied, worker exits, daemon restarts; by time

	Findings []Finding `json:"findings,omitempty"`
	Checks   []Check   `json:"checks,omitempty"`
	Pass     bool      `json:"pass"` // every check holds and nothing was found
	Error    string    `json:"error,omitempty"`
}

// Ledger is a daemon process's ledger at its end.
type Ledger struct {
	PID      int               `json:"pid"`
	Accepted uint64            `json:"accepted"`
	Open     uint64            `json:"open"`
	Outcomes map[string]uint64 `json:"outcomes"`
}

// Sample is the daemon's state at one moment of a run.
type Sample struct {
	T           float64 `json:"t"` // seconds since the epoch (negative before it)
	PID         int     `json:"pid"`
	Pending     int     `json:"pending"`  // accepted, not yet handed off
	Queued      int     `json:"queued"`   // in route queues
	Inflight    int     `json:"inflight"` // handed off, not yet acknowledged
	Workers     int     `json:"workers"`  // registered
	ListenQueue int     `json:"listen_queue"`
	Accepted    uint64  `json:"accepted"`   // cumulative over the run, across restarts
	Dispatched  uint64  `json:"dispatched"` // likewise
	Leaked      uint64  `json:"leaked"`     // dispatch timeouts, likewise
	Open        uint64  `json:"open"`
	FDs         int     `json:"fds"`
	// Unanswered marks a sample the daemon did not answer in time (paused,
	// or out of descriptors): only the kernel's view is measured —
	// ListenQueue, read from /proc, and FDs; the cumulative counts are the
	// last answered ones, and Pending, Queued, Inflight, Workers and Open
	// are unknown (0).
	Unanswered bool `json:"unanswered,omitempty"`
}

// FDCheck compares the daemon's descriptors after the run with before.
type FDCheck struct {
	Baseline int    `json:"baseline"` // after the workers registered, before the load
	After    int    `json:"after"`    // after the drain
	Allowed  int    `json:"allowed"`  // Baseline less the control connections of workers gone since, plus connections still open
	Checked  bool   `json:"checked"`
	Note     string `json:"note,omitempty"` // why not checked, or which baseline (after a restart)
}

// Finding is an invariant that did not hold.
type Finding struct {
	Kind   string `json:"kind"` // ledger, fd, process, fault, setup
	Detail string `json:"detail"`
}

// Check is one expectation evaluated on the run.
type Check struct {
	Where  string  `json:"where"`
	Expect string  `json:"expect"`
	Value  float64 `json:"value"`
	Pass   bool    `json:"pass"`
}

// RunFile is the name of the run file of a cell and repetition.
func RunFile(cell, rep int) string { return fmt.Sprintf("cell-%03d-rep-%d.json", cell, rep) }

// RunFiles lists the run files in dir (the names RunFile gives), sorted
// by name.
func RunFiles(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "cell-*-rep-*.json"))
}

// WriteJSON writes v to path through a temporary file, so a reader never
// sees half a file.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadDir reads a results directory: its manifest and every run file,
// sorted by cell and repetition. Run files from other machines of the
// same sweep (--cell) may be copied in beside them. A run file of another
// scenario or cell layout is an error.
func ReadDir(dir string) (*Manifest, []*Run, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	names, err := RunFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	var runs []*Run
	for _, name := range names {
		r := &Run{}
		if err := readJSON(name, r); err != nil {
			return nil, nil, err
		}
		switch {
		case r.Format != RunFormat:
			return nil, nil, fmt.Errorf("%s: format %q, want %q", name, r.Format, RunFormat)
		case r.Scenario != m.Scenario:
			return nil, nil, fmt.Errorf("%s: a run of scenario %q, but the manifest is of %q", name, r.Scenario, m.Scenario)
		case r.Sweep != m.Sweep:
			return nil, nil, fmt.Errorf("%s: a run of another sweep of %s (other file text, --set, --seed or --repetitions): keep the runs of each sweep apart", name, m.Scenario)
		case r.Cell < 0 || r.Cell >= len(m.Cells) || m.Cells[r.Cell].Label != r.Label:
			return nil, nil, fmt.Errorf("%s: cell %d (%s) is not in the manifest's sweep: were the runs made with other --set flags?", name, r.Cell, r.Label)
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool {
		if runs[i].Cell != runs[j].Cell {
			return runs[i].Cell < runs[j].Cell
		}
		return runs[i].Repetition < runs[j].Repetition
	})
	return m, runs, nil
}

// ReadManifest reads the manifest of a results directory. A directory
// without one is an error that matches fs.ErrNotExist.
func ReadManifest(dir string) (*Manifest, error) {
	var m Manifest
	if err := readJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		return nil, err
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", filepath.Join(dir, ManifestFile), m.Format, ManifestFormat)
	}
	return &m, nil
}

// noManifest is the error of a directory without a manifest.
type noManifest struct{ dir string }

func (e noManifest) Error() string {
	return e.dir + ": no manifest: is this a directory portshare tune wrote?"
}

func (noManifest) Is(target error) bool { return target == fs.ErrNotExist }

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(path, ManifestFile) {
		return noManifest{filepath.Dir(path)}
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// Parse reads the manifest's scenario text again, with its --set flags,
// as the sweep ran it. It fails if this version of portshare no longer
// reads the text.
func (m *Manifest) Parse() (*scenarios.Scenario, error) {
	s, err := scenarios.Parse(m.ScenarioFile, []byte(m.ScenarioText))
	if err != nil {
		return nil, err
	}
	for _, set := range m.Set {
		if err := s.Set(set); err != nil {
			return nil, err
		}
	}
	return s, nil
}
