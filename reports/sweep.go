// Package reports turns a results directory of `portshare tune` into
// what a reader needs: each cell's repetitions side by side, their medians
// and spread, and a verdict on which settings avoided leaked handles and
// errors. The HTML page (reports/page) and the comparison of two sweeps
// (reports/compare) both read a sweep through this package, so a cell's
// median means the same thing in both.
package reports

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
)

// Sweep is a results directory read and summarised.
type Sweep struct {
	Dir      string
	Manifest *results.Manifest
	// Scenario is the manifest's scenario text parsed again, with its
	// --set flags; nil (with ScenarioErr set) if this version of portshare
	// no longer reads it, in which case the report still shows the runs.
	Scenario    *scenarios.Scenario
	ScenarioErr error
	Cells       []*Cell // every cell of the manifest, in order, run or not
	Runs        []*results.Run
}

// Cell is one cell of the sweep and its repetitions.
type Cell struct {
	results.Cell
	Runs []*results.Run // by repetition; empty if the cell was not run here
}

// Load reads a results directory (results.ReadDir) and groups its runs by
// cell. An unreadable directory or a run of another sweep is an error; a
// scenario text that no longer parses is not (Sweep.ScenarioErr).
func Load(dir string) (*Sweep, error) {
	m, runs, err := results.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Sweep{Dir: dir, Manifest: m, Runs: runs}
	s.Scenario, s.ScenarioErr = m.Parse()
	byIndex := map[int]*Cell{}
	for _, c := range m.Cells {
		cell := &Cell{Cell: c}
		s.Cells = append(s.Cells, cell)
		byIndex[c.Index] = cell
	}
	for _, r := range runs {
		if c := byIndex[r.Cell]; c != nil {
			c.Runs = append(c.Runs, r)
		}
	}
	return s, nil
}

// Ran is the cells that have at least one run.
func (s *Sweep) Ran() []*Cell {
	var out []*Cell
	for _, c := range s.Cells {
		if len(c.Runs) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Cell finds a cell by its label, or nil.
func (s *Sweep) Cell(label string) *Cell {
	for _, c := range s.Cells {
		if c.Label == label {
			return c
		}
	}
	return nil
}

// Stat summarises one measure over a cell's repetitions.
type Stat struct {
	Values           []float64 // in repetition order, of the repetitions that measured it
	Median, Min, Max float64   // NaN when there are no values
}

// N is the number of repetitions measured.
func (s Stat) N() int { return len(s.Values) }

// Spread is the half-range around the median as a fraction of it (the
// "±" benchstat prints), 0 for a single value or a zero median.
func (s Stat) Spread() float64 {
	if len(s.Values) < 2 || s.Median == 0 || math.IsNaN(s.Median) {
		return 0
	}
	return math.Max(s.Max-s.Median, s.Median-s.Min) / math.Abs(s.Median)
}

// Summarize computes a Stat; the median of an even count is the mean of
// the middle two.
func Summarize(values []float64) Stat {
	st := Stat{Values: values, Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	if len(values) == 0 {
		return st
	}
	v := slices.Clone(values)
	sort.Float64s(v)
	st.Min, st.Max = v[0], v[len(v)-1]
	if n := len(v); n%2 == 1 {
		st.Median = v[n/2]
	} else {
		st.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return st
}

// Metric is one metric of scenarios.MetricNames over the cell's runs that
// measured it, in repetition order. A run that could not start (its Error
// set) measured nothing, and a run file of an older version may lack a
// metric: both are left out rather than read as 0, so Stat.N may be less
// than the repetitions.
func (c *Cell) Metric(name string) Stat {
	var v []float64
	for _, r := range c.Runs {
		if x, ok := r.Metrics[name]; ok && r.Error == "" {
			v = append(v, x)
		}
	}
	return Summarize(v)
}

// Started counts the runs that started (measured something).
func (c *Cell) Started() int {
	n := 0
	for _, r := range c.Runs {
		if r.Error == "" {
			n++
		}
	}
	return n
}

// Outcomes adds up the normal clients' outcomes over the cell's runs.
func (c *Cell) Outcomes() map[string]int64 {
	sum := map[string]int64{}
	for _, r := range c.Runs {
		for k, n := range r.Outcomes {
			sum[k] += n
		}
	}
	return sum
}

// Passed counts the runs that met every expectation with no finding.
func (c *Cell) Passed() int {
	n := 0
	for _, r := range c.Runs {
		if r.Pass {
			n++
		}
	}
	return n
}

// LeakFree reports whether the cell ran, every run started, and none
// leaked a handle.
func (c *Cell) LeakFree() bool {
	return c.all(func(r *results.Run) bool { return zero(r, "leaked_handles") })
}

// Served reports whether the cell ran, every run started, and no normal
// client's session failed in any.
func (c *Cell) Served() bool { return c.all(func(r *results.Run) bool { return zero(r, "errors") }) }

// zero reports whether the run measured the metric and found none: a run
// file without it (an older version) proves nothing.
func zero(r *results.Run, metric string) bool {
	v, ok := r.Metrics[metric]
	return ok && v == 0
}

// Clean reports whether the cell ran, every run started, and every run
// leaked nothing, failed no session of a normal client, met every
// expectation and had no finding.
func (c *Cell) Clean() bool {
	return c.all(func(r *results.Run) bool {
		return r.Pass && zero(r, "leaked_handles") && zero(r, "errors")
	})
}

// Mixed reports whether the repetitions disagree on any of: pass, leaked
// handles or not, errors or not.
func (c *Cell) Mixed() bool {
	if len(c.Runs) < 2 {
		return false
	}
	key := func(r *results.Run) string {
		return fmt.Sprint(r.Pass, r.Error == "", zero(r, "leaked_handles"), zero(r, "errors"))
	}
	for _, r := range c.Runs[1:] {
		if key(r) != key(c.Runs[0]) {
			return true
		}
	}
	return false
}

func (c *Cell) all(ok func(*results.Run) bool) bool {
	if len(c.Runs) == 0 {
		return false
	}
	for _, r := range c.Runs {
		if r.Error != "" || !ok(r) {
			return false
		}
	}
	return true
}

// RunErrors lists the runs that could not start, one line each: "rep 2
// could not start: no daemon".
func (c *Cell) RunErrors() []string {
	var out []string
	for _, r := range c.Runs {
		if r.Error != "" {
			out = append(out, fmt.Sprintf("rep %d could not start: %s", r.Repetition, r.Error))
		}
	}
	return out
}

// Findings lists the runs that could not start (RunErrors), then every
// run's findings, prefixed with the repetition.
func (c *Cell) Findings() []string {
	out := c.RunErrors()
	for _, r := range c.Runs {
		for _, f := range r.Findings {
			out = append(out, fmt.Sprintf("rep %d: %s: %s", r.Repetition, f.Kind, f.Detail))
		}
	}
	return out
}

// CheckResult is one expectation over a cell's repetitions.
type CheckResult struct {
	Where, Expect string
	Values        []float64 // measured, by repetition
	Passed, Runs  int
	FailedIn      []Rep // the repetitions that failed it, in order
}

// Rep is one repetition's measure.
type Rep struct {
	Repetition int
	Value      float64
}

// Checks gathers the runs' expectation results by assertion, in the
// order the first run lists them.
func (c *Cell) Checks() []CheckResult {
	var out []CheckResult
	index := map[[2]string]int{}
	for _, r := range c.Runs {
		for _, ch := range r.Checks {
			k := [2]string{ch.Where, ch.Expect}
			i, ok := index[k]
			if !ok {
				i = len(out)
				index[k] = i
				out = append(out, CheckResult{Where: ch.Where, Expect: ch.Expect})
			}
			out[i].Values = append(out[i].Values, ch.Value)
			out[i].Runs++
			if ch.Pass {
				out[i].Passed++
			} else {
				out[i].FailedIn = append(out[i].FailedIn, Rep{r.Repetition, ch.Value})
			}
		}
	}
	return out
}
