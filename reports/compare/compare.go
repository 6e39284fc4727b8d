// Package compare decides whether a new sweep of a scenario regressed from
// a baseline sweep of the same scenario: the engine of `portshare compare`,
// CI's regression gate.
//
// Cells are matched by label. For each matched cell and each compared
// metric, the tolerance (a flag over the scenario's compare section over
// scenarios.DefaultTolerances) sets a limit from the baseline's worst
// repetition in the metric's bad direction (higher for every metric but
// ok, throughput and dispatched): worst×R + A, or worst/R − A where lower
// is worse. The metric regresses when the new median is past that limit
// and, when both sweeps have at least 4 repetitions, a two-sided
// Mann–Whitney U test also finds the repetitions different (p < 0.05), so
// that one noisy repetition cannot fail a gate its siblings pass; a median
// past the limit that the test does not find significant is ok, and the
// verdict says so.
//
// An exact tolerance is for counts that must stay zero. Over a baseline
// whose worst repetition is 0 it compares worst with worst, without a
// test: every new repetition must be 0 too. Over a non-zero baseline worst
// (a cell that leaks on purpose) it is scenarios.ExactOverNonZero, x1.5+2,
// on the median like any other tolerance: such a count varies from run to
// run, and a new sweep of more repetitions draws a higher worst.
//
// Improvements are the mirror image of regressions: the new median better
// than the baseline's best repetition by the same tolerance (and
// significant where tested); for exact over a zero baseline worst, the
// new worst better than zero, which a count never is.
//
// Besides the metrics, every expectation of the scenario fails a cell if a
// new repetition failed it, unless the baseline failed it too, in as large
// a share of its repetitions: that is a warning, which does not fail the
// comparison. New repetitions that could not start fail the cell on the
// same terms. So a sweep compared with itself always passes. A baseline
// cell the new sweep did not run, or ran without a single run that
// started, fails the comparison: a gate that compared nothing must not
// pass.
package compare

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/scenarios"
)

// Alpha is the significance level of the Mann–Whitney U test.
const Alpha = 0.05

// MinReps is the number of repetitions both sweeps need before a
// regression must also be significant: with fewer, the test cannot reach
// Alpha (3 against 3 gives p ≥ 0.1).
const MinReps = 4

// Options change a comparison.
type Options struct {
	// Tolerances override the scenario's compare section and the
	// defaults, by metric (the --tolerance flags). Each must be a metric
	// of scenarios.MetricNames (ParseToleranceFlag checks).
	Tolerances map[string]scenarios.Tolerance
}

// Source says where a metric's tolerance came from.
type Source string

// The sources of a tolerance, by precedence.
const (
	FromFlag     Source = "flag"
	FromScenario Source = "scenario"
	FromDefault  Source = "default"
)

// MetricTolerance is the tolerance a comparison applies to one metric.
type MetricTolerance struct {
	Metric    string
	Tolerance scenarios.Tolerance
	Source    Source
}

// Verdict is the outcome of one metric in one cell.
type Verdict int

// Verdicts of a metric.
const (
	Same      Verdict = iota // inside the tolerance
	Improved                 // better by more than the tolerance
	Regressed                // worse by more than the tolerance: a failure
	NotGated                 // tolerance off (or sessions): shown only
)

func (v Verdict) String() string {
	return [...]string{"ok", "improved", "REGRESSION", "not gated"}[v]
}

// CellStatus says whether a cell was compared.
type CellStatus int

// Cell statuses.
const (
	Compared  CellStatus = iota // in both sweeps, with runs that started
	NotRun                      // in the baseline, not run by the new sweep: a failure
	OnlyInNew                   // not in the baseline (or not run there): not compared
)

// Result is a comparison of two sweeps.
type Result struct {
	Scenario      string
	Baseline, New *reports.Sweep
	// Notes are remarks that do not fail the comparison: a changed
	// scenario text, a scenario that no longer parses.
	Notes      []string
	Tolerances []MetricTolerance // the compared metrics, in scenarios.MetricNames order
	Cells      []*CellResult     // the baseline's cells that ran, in order, then the new sweep's others
}

// CellResult is one cell of a comparison.
type CellResult struct {
	Label  string
	Status CellStatus
	// Base is nil for a cell only in the new sweep, New for a cell the
	// new sweep did not run.
	Base, New *reports.Cell
	Metrics   []MetricResult // Compared cells only
	Checks    []CheckResult  // every expectation the new runs evaluated
	// Errors are the new repetitions that could not start. They fail the
	// cell, since what they would have measured is unknown, unless the
	// baseline's could not start as often (ErrorsFail). In a NotRun cell
	// they are why it did not run, and count as that.
	Errors []string
	// BaseErrors are the baseline's repetitions of the cell that could
	// not start.
	BaseErrors int
	Time       time.Duration // the new runs' wall clock, summed
}

// ErrorsFail reports whether the new repetitions that could not start
// fail the cell: some could not start, and in a larger share of the
// cell's repetitions than in the baseline.
func (cr *CellResult) ErrorsFail() bool {
	if len(cr.Errors) == 0 {
		return false
	}
	if cr.Base == nil || cr.BaseErrors == 0 {
		return true
	}
	return moreOften(len(cr.Errors), len(cr.New.Runs), cr.BaseErrors, len(cr.Base.Runs))
}

// moreOften reports whether a of n is a larger share than b of m.
func moreOften(a, n, b, m int) bool { return a*m > b*n }

// MetricResult is one metric of one compared cell.
type MetricResult struct {
	Metric    string
	Tolerance scenarios.Tolerance // as given
	// Applied is the tolerance that set the limit: Tolerance, or
	// scenarios.ExactOverNonZero for exact over a non-zero baseline worst.
	Applied   scenarios.Tolerance
	Source    Source
	Base, New reports.Stat
	// BaseWorst and NewWorst are the worst repetitions in the metric's
	// bad direction; Limit is what NewWorst (exact over a zero baseline
	// worst: OnWorst) or New.Median (the other tolerances) may not pass,
	// NaN when not gated.
	BaseWorst, NewWorst, Limit float64
	LowerIsWorse               bool
	P                          float64 // Mann–Whitney U p-value; NaN when not computed
	Verdict                    Verdict
	// NotSignificant marks a median past the limit that the U test does
	// not find significant: the verdict is Same, shown as "ok (not
	// significant, p=…)".
	NotSignificant bool
	// Unmeasured marks a gated metric the baseline measured and no new
	// run did: a regression, since a gate must not pass on missing data.
	Unmeasured bool
	// Note explains a verdict the numbers alone do not: why a median past
	// the limit is not a regression.
	Note string
}

// Gated reports whether the metric can fail the cell.
func (m MetricResult) Gated() bool { return m.Verdict != NotGated }

// OnWorst reports whether the worst repetitions decided the verdict: an
// exact tolerance over a baseline whose worst repetition is 0.
func (m MetricResult) OnWorst() bool {
	return m.Verdict != NotGated && m.Tolerance.Exact && m.BaseWorst == 0
}

// CheckResult is one expectation of the scenario in one cell.
type CheckResult struct {
	reports.CheckResult
	Failures []string // the new repetitions that failed it: "rep 2: 0.21"
	// BaseFailed says the baseline failed it too (in some repetition);
	// InBase whether the baseline evaluated it at all.
	BaseFailed, InBase   bool
	BasePassed, BaseRuns int
	// ShowWhere names the where clause: the cell has another expectation
	// of the same text, from another clause.
	ShowWhere bool
}

// Failed reports whether any new repetition failed the expectation.
func (c CheckResult) Failed() bool { return c.Passed < c.Runs }

// Fails reports whether the expectation fails the cell: a new repetition
// failed it, and the baseline did not fail it in as large a share of its
// repetitions.
func (c CheckResult) Fails() bool {
	if !c.Failed() {
		return false
	}
	return !c.BaseFailed || moreOften(c.Runs-c.Passed, c.Runs, c.BaseRuns-c.BasePassed, c.BaseRuns)
}

// AsInBase reports a warning: new repetitions failed the expectation, but
// no more often than the baseline's did.
func (c CheckResult) AsInBase() bool { return c.Failed() && !c.Fails() }

// Name is the expectation as a test case name: its text, and its where
// clause when another clause expects the same of the cell.
func (c CheckResult) Name() string {
	if !c.ShowWhere {
		return "expect " + c.Expect
	}
	return fmt.Sprintf("expect %s (where %s)", c.Expect, c.Where)
}

// Compare compares the new sweep with the baseline. Its errors are about
// the input, not the outcome (the CLI exits 2 on them): the sweeps are of
// different scenarios, or the baseline ran no cell.
func Compare(base, latest *reports.Sweep, opt Options) (*Result, error) {
	if base.Manifest.Scenario != latest.Manifest.Scenario {
		return nil, fmt.Errorf("%s is a sweep of scenario %q but %s is of %q: compare sweeps of one scenario", base.Dir, base.Manifest.Scenario, latest.Dir, latest.Manifest.Scenario)
	}
	if len(base.Ran()) == 0 {
		return nil, fmt.Errorf("%s: the baseline has no run: nothing to compare against (is the sweep finished?)", base.Dir)
	}
	r := &Result{Scenario: latest.Manifest.Scenario, Baseline: base, New: latest}
	if base.Manifest.ScenarioText != latest.Manifest.ScenarioText {
		r.Notes = append(r.Notes, "the scenario text differs between the sweeps: cells are compared by label, with the new sweep's expectations and tolerances")
	}
	if !slices.Equal(base.Manifest.Set, latest.Manifest.Set) {
		r.Notes = append(r.Notes, fmt.Sprintf("the --set flags differ: baseline %q, new %q", base.Manifest.Set, latest.Manifest.Set))
	}
	r.Tolerances, r.Notes = tolerances(base, latest, opt, r.Notes)

	for _, bc := range base.Cells {
		nc := latest.Cell(bc.Label)
		if bc.Started() == 0 {
			continue // the new sweep's cell, if it ran, is listed below
		}
		cr := &CellResult{Label: bc.Label, Base: bc, New: nc}
		if nc == nil || nc.Started() == 0 {
			cr.Status = NotRun
			if nc != nil {
				cr.Errors = nc.RunErrors()
			}
			r.Cells = append(r.Cells, cr)
			continue
		}
		cr.Status = Compared
		cr.BaseErrors = len(bc.Runs) - bc.Started()
		for _, mt := range r.Tolerances {
			cr.Metrics = append(cr.Metrics, decide(mt, bc.Metric(mt.Metric), nc.Metric(mt.Metric)))
		}
		cr.finish()
		r.Cells = append(r.Cells, cr)
	}
	for _, nc := range latest.Cells {
		if len(nc.Runs) == 0 || slices.ContainsFunc(r.Cells, func(c *CellResult) bool { return c.Label == nc.Label }) {
			continue
		}
		cr := &CellResult{Label: nc.Label, Status: OnlyInNew, Base: base.Cell(nc.Label), New: nc}
		if cr.Base != nil && len(cr.Base.Runs) == 0 {
			cr.Base = nil
		}
		if cr.Base != nil {
			cr.BaseErrors = len(cr.Base.Runs) - cr.Base.Started()
		}
		cr.finish()
		r.Cells = append(r.Cells, cr)
	}
	return r, nil
}

// finish gathers the new runs' expectations, errors and time.
func (cr *CellResult) finish() {
	cr.Errors = cr.New.RunErrors()
	for _, r := range cr.New.Runs {
		if !r.Started.IsZero() && r.Finished.After(r.Started) {
			cr.Time += r.Finished.Sub(r.Started)
		}
	}
	var baseChecks []reports.CheckResult
	if cr.Base != nil {
		baseChecks = cr.Base.Checks()
	}
	for _, ch := range cr.New.Checks() {
		c := CheckResult{CheckResult: ch}
		for _, f := range ch.FailedIn {
			c.Failures = append(c.Failures, fmt.Sprintf("rep %d: %s", f.Repetition, value("", f.Value)))
		}
		if i := slices.IndexFunc(baseChecks, func(b reports.CheckResult) bool { return b.Where == ch.Where && b.Expect == ch.Expect }); i >= 0 {
			c.InBase = true
			c.BasePassed, c.BaseRuns = baseChecks[i].Passed, baseChecks[i].Runs
			c.BaseFailed = c.BasePassed < c.BaseRuns
		}
		cr.Checks = append(cr.Checks, c)
	}
	for i := range cr.Checks {
		cr.Checks[i].ShowWhere = slices.ContainsFunc(cr.Checks, func(o CheckResult) bool {
			return o.Expect == cr.Checks[i].Expect && o.Where != cr.Checks[i].Where
		})
	}
}

// tolerances merges the defaults, the scenario's compare section (the new
// sweep's, or the baseline's if the new text no longer parses) and the
// flags, in scenarios.MetricNames order.
func tolerances(base, latest *reports.Sweep, opt Options, notes []string) ([]MetricTolerance, []string) {
	merged := map[string]MetricTolerance{}
	for m, t := range scenarios.DefaultTolerances() {
		merged[m] = MetricTolerance{m, t, FromDefault}
	}
	sc := latest.Scenario
	if sc == nil {
		sc = base.Scenario
		if sc != nil {
			notes = append(notes, fmt.Sprintf("the new sweep's scenario text no longer parses (%v): tolerances from the baseline's", latest.ScenarioErr))
		} else {
			notes = append(notes, fmt.Sprintf("neither sweep's scenario text parses (%v): default tolerances", latest.ScenarioErr))
		}
	}
	if sc != nil {
		for m, t := range sc.Compare {
			merged[m] = MetricTolerance{m, t, FromScenario}
		}
	}
	for m, t := range opt.Tolerances {
		merged[m] = MetricTolerance{m, t, FromFlag}
	}
	var out []MetricTolerance
	for _, n := range scenarios.MetricNames {
		if mt, ok := merged[n.Name]; ok {
			out = append(out, mt)
		}
	}
	return out, notes
}

// ParseToleranceFlag reads a --tolerance flag, METRIC=TOL. Errors are one
// line naming the metrics or the forms that are valid.
func ParseToleranceFlag(arg string) (string, scenarios.Tolerance, error) {
	metric, text, ok := strings.Cut(arg, "=")
	if !ok {
		return "", scenarios.Tolerance{}, fmt.Errorf("--tolerance %q: want METRIC=TOL, TOL one of %s", arg, scenarios.ToleranceForms)
	}
	t, err := scenarios.ParseMetricTolerance(strings.TrimSpace(metric), text)
	if err != nil {
		return "", scenarios.Tolerance{}, fmt.Errorf("--tolerance %s: %v", arg, err)
	}
	return strings.TrimSpace(metric), t, nil
}

// ParseToleranceFlags reads every --tolerance flag; a metric given twice
// is an error.
func ParseToleranceFlags(args []string) (map[string]scenarios.Tolerance, error) {
	out := map[string]scenarios.Tolerance{}
	for _, a := range args {
		m, t, err := ParseToleranceFlag(a)
		if err != nil {
			return nil, err
		}
		if _, dup := out[m]; dup {
			return nil, fmt.Errorf("--tolerance %s: %s given twice", a, m)
		}
		out[m] = t
	}
	return out, nil
}

// decide applies one tolerance to one metric of a cell (see the package
// comment for the rule).
func decide(mt MetricTolerance, base, latest reports.Stat) MetricResult {
	lower := scenarios.LowerIsWorse(mt.Metric)
	res := MetricResult{Metric: mt.Metric, Tolerance: mt.Tolerance, Applied: mt.Tolerance, Source: mt.Source, Base: base, New: latest, LowerIsWorse: lower, Limit: math.NaN(), P: math.NaN()}
	// worse(a, b): a is worse than b in the metric's bad direction.
	worse := func(a, b float64) bool { return a > b }
	res.BaseWorst, res.NewWorst = base.Max, latest.Max
	baseBest := base.Min
	if lower {
		worse = func(a, b float64) bool { return a < b }
		res.BaseWorst, res.NewWorst = base.Min, latest.Min
		baseBest = base.Max
	}
	t := mt.Tolerance
	switch {
	case t.Off || mt.Metric == "sessions":
		res.Verdict = NotGated
		return res
	case latest.N() == 0 && base.N() > 0:
		// A build that stops measuring a gated metric (a run file
		// without leaked_handles) must not pass for it.
		res.Verdict = Regressed
		res.Unmeasured = true
		return res
	case t.Exact && res.BaseWorst == 0:
		// A count that must stay zero: in every repetition.
		res.Limit = 0
		switch {
		case worse(res.NewWorst, 0):
			res.Verdict = Regressed
		case worse(0, res.NewWorst):
			res.Verdict = Improved
		}
		return res
	case t.Exact:
		t = scenarios.ExactOverNonZero
		res.Applied = t
	}
	var better float64 // the mirror of the limit, from the baseline's best
	if lower {
		res.Limit = res.BaseWorst/t.Ratio - t.Abs
		better = baseBest*t.Ratio + t.Abs
	} else {
		res.Limit = res.BaseWorst*t.Ratio + t.Abs
		better = (baseBest - t.Abs) / t.Ratio
	}
	significant := true
	if base.N() >= MinReps && latest.N() >= MinReps {
		_, res.P = MannWhitneyU(base.Values, latest.Values)
		significant = res.P < Alpha
	}
	switch {
	case worse(latest.Median, res.Limit) && significant:
		res.Verdict = Regressed
	case worse(latest.Median, res.Limit):
		res.NotSignificant = true
		res.Note = fmt.Sprintf("median past the limit, but the repetitions do not differ significantly (p=%.3f ≥ %g)", res.P, Alpha)
	case worse(better, latest.Median) && significant:
		res.Verdict = Improved
	}
	return res
}

// Counts of what failed a comparison, and of the warnings. Each problem
// counts once: the runs that could not start in a cell not run are why it
// did not run, not more problems.
type Counts struct {
	Regressions, FailedChecks, NotRun, RunErrors int
	// ChecksAsInBase and RunErrorsAsInBase are the warnings: expectations
	// failed, and repetitions that could not start, no more often than in
	// the baseline.
	ChecksAsInBase, RunErrorsAsInBase int
	Improvements                      int
	Cells, NotCompared                int
}

// Counts adds up the comparison's failures and warnings.
func (r *Result) Counts() Counts {
	var c Counts
	for _, cell := range r.Cells {
		switch cell.Status {
		case NotRun:
			c.NotRun++
			c.Cells++
			continue
		case OnlyInNew:
			c.NotCompared++
		default:
			c.Cells++
		}
		if cell.ErrorsFail() {
			c.RunErrors += len(cell.Errors)
		} else {
			c.RunErrorsAsInBase += len(cell.Errors)
		}
		for _, m := range cell.Metrics {
			switch m.Verdict {
			case Regressed:
				c.Regressions++
			case Improved:
				c.Improvements++
			}
		}
		for _, ch := range cell.Checks {
			switch {
			case ch.Fails():
				c.FailedChecks++
			case ch.AsInBase():
				c.ChecksAsInBase++
			}
		}
	}
	return c
}

// Failed reports whether the comparison fails the gate: a regression, a
// failed expectation, a baseline cell not run, or a new run that could
// not start (each but the cell not run more often than in the baseline).
func (r *Result) Failed() bool {
	c := r.Counts()
	return c.Regressions+c.FailedChecks+c.NotRun+c.RunErrors > 0
}

// Summary is the comparison in one line: "2 regressions, 1 failed
// expectation in 4 cells", or "no regression in 4 cells", then in
// parentheses what did not fail it: improvements, warnings, new cells.
func (r *Result) Summary() string {
	c := r.Counts()
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, reports.Plural(n, one, many))
		}
	}
	add(c.Regressions, "regression", "regressions")
	add(c.FailedChecks, "failed expectation", "failed expectations")
	add(c.NotRun, "cell not run", "cells not run")
	add(c.RunErrors, "run that could not start", "runs that could not start")
	s := strings.Join(parts, ", ")
	if s == "" {
		s = "no regression"
	}
	s += " in " + reports.Plural(c.Cells, "cell", "cells")
	parts = nil
	add(c.Improvements, "improvement", "improvements")
	add(c.ChecksAsInBase, "expectation failing as in the baseline", "expectations failing as in the baseline")
	add(c.RunErrorsAsInBase, "run that could not start, as in the baseline", "runs that could not start, as in the baseline")
	if c.NotCompared > 0 {
		parts = append(parts, reports.Plural(c.NotCompared, "new cell", "new cells")+" not compared")
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// Load reads both results directories (reports.Load) and compares them.
// Every error is about the inputs (a directory that is not a results
// directory, sweeps that cannot be compared), never about the outcome.
func Load(baseDir, latestDir string, opt Options) (*Result, error) {
	base, err := reports.Load(baseDir)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	latest, err := reports.Load(latestDir)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	return Compare(base, latest, opt)
}
