package compare

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/reports/compare/comparetest"
	"github.com/portshare/portshare/scenarios"
)

var fixture = comparetest.Fixture("../..")

// compareDirs compares two directories and fails the test on an error.
func compareDirs(t *testing.T, base, latest string, opt Options) *Result {
	t.Helper()
	r, err := Load(base, latest, opt)
	require.NoError(t, err)
	return r
}

func cell(t *testing.T, r *Result, label string) *CellResult {
	t.Helper()
	for _, c := range r.Cells {
		if c.Label == label {
			return c
		}
	}
	require.Failf(t, "no cell", "%q", label)
	return nil
}

func metric(t *testing.T, c *CellResult, name string) MetricResult {
	t.Helper()
	for _, m := range c.Metrics {
		if m.Metric == name {
			return m
		}
	}
	require.Failf(t, "no metric", "%s in %s", name, c.Label)
	return MetricResult{}
}

func check(t *testing.T, c *CellResult, expect string) CheckResult {
	t.Helper()
	for _, ch := range c.Checks {
		if ch.Expect == expect {
			return ch
		}
	}
	require.Failf(t, "no check", "%s in %s", expect, c.Label)
	return CheckResult{}
}

// failures lists the failed rows as "cell: item".
func failures(r *Result) []string {
	var out []string
	for _, row := range r.Rows() {
		if row.Fail {
			out = append(out, row.Cell+": "+row.Item)
		}
	}
	return out
}

func TestIdenticalSweepsPass(t *testing.T) {
	r := compareDirs(t, fixture, fixture, Options{})
	assert.False(t, r.Failed())
	assert.Equal(t, "no regression in 4 cells", r.Summary())
	assert.Empty(t, r.Notes)
	require.Len(t, r.Cells, 4)
	for _, c := range r.Cells {
		assert.Equal(t, Compared, c.Status)
		require.Len(t, c.Metrics, 10, "the default tolerances")
		for _, m := range c.Metrics {
			assert.Equal(t, Same, m.Verdict, "%s %s", c.Label, m.Metric)
			assert.Equal(t, FromDefault, m.Source)
			assert.True(t, math.IsNaN(m.P), "one repetition: no U test")
		}
		for _, ch := range c.Checks {
			assert.False(t, ch.Failed())
			assert.True(t, ch.InBase)
		}
	}
	assert.Equal(t, []string{"error_rate", "throughput", "p99_ms", "leaked_handles", "dispatch_timeout", "dispatch_error", "evictions", "ledger_violations", "fd_violations", "findings"}, metricNames(r.Tolerances))
	// The same sweep copied is the same sweep.
	r = compareDirs(t, fixture, comparetest.Doctored(t, fixture, 1, nil), Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
}

func metricNames(ts []MetricTolerance) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Metric)
	}
	return out
}

func TestRegressions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, s *comparetest.Sweep)
		cell   string
		metric string
		change string
		fails  []string
	}{
		{"a leak where there was none", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Compat3s, "leaked_handles", func(float64) float64 { return 1 })
		}, comparetest.Compat3s, "leaked_handles", "worst +1", []string{comparetest.Compat3s + ": leaked_handles", comparetest.Compat3s + ": expect leaked_handles == 0"}},
		{"p99 three times", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
		}, comparetest.Compat3s, "p99_ms", "x3.00", []string{comparetest.Compat3s + ": p99_ms"}},
		{"error rate up 0.2", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Compat3s, "error_rate", func(v float64) float64 { return v + 0.2 })
		}, comparetest.Compat3s, "error_rate", "+0.2", []string{comparetest.Compat3s + ": error_rate", comparetest.Compat3s + ": expect error_rate < 0.05"}},
		{"throughput halved", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Reclaim3s, "throughput", func(v float64) float64 { return v / 2 })
		}, comparetest.Reclaim3s, "throughput", "x0.50", []string{comparetest.Reclaim3s + ": throughput"}},
		{"evictions where they are expected, past x1.5+2", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Compat1s, "evictions", func(v float64) float64 { return v + 4 })
		}, comparetest.Compat1s, "evictions", "+4", []string{comparetest.Compat1s + ": evictions"}},
		{"leaks where it leaks on purpose, past x1.5+2", func(t *testing.T, s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Reclaim1s, "leaked_handles", func(float64) float64 { return 7 })
		}, comparetest.Reclaim1s, "leaked_handles", "+4", []string{comparetest.Reclaim1s + ": leaked_handles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) { tc.edit(t, s) })
			r := compareDirs(t, fixture, latest, Options{})
			assert.True(t, r.Failed())
			m := metric(t, cell(t, r, tc.cell), tc.metric)
			assert.Equal(t, Regressed, m.Verdict, detail(m))
			assert.Equal(t, tc.change, change(m))
			assert.Equal(t, tc.fails, failures(r))
			assert.Contains(t, r.Summary(), "1 regression")
			assert.True(t, strings.HasSuffix(r.Summary(), " in 4 cells"), r.Summary())
		})
	}
}

func TestRegressionDetails(t *testing.T) {
	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "leaked_handles", func(float64) float64 { return 1 })
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
	})
	r := compareDirs(t, fixture, latest, Options{})
	c := cell(t, r, comparetest.Compat3s)
	leak := metric(t, c, "leaked_handles")
	assert.Equal(t, 0.0, leak.BaseWorst)
	assert.Equal(t, 1.0, leak.NewWorst)
	assert.Equal(t, "worst repetition 1, baseline's worst 0 (exact: must not be higher)", detail(leak))
	assert.Equal(t, "worst ≤ 0 (exact)", limit(leak))
	p99 := metric(t, c, "p99_ms")
	assert.InDelta(t, 1809.407*2+20, p99.Limit, 1e-9)
	assert.Equal(t, "≤ 3.64s (x2+20)", limit(p99))
	assert.Equal(t, "median 5.43s is above the limit 3.64s (baseline's worst 1.81s, tolerance x2+20)", detail(p99))
	assert.Equal(t, "2 regressions, 1 failed expectation in 4 cells", r.Summary())
	ch := check(t, c, "leaked_handles == 0")
	assert.True(t, ch.Failed())
	assert.False(t, ch.BaseFailed)
	assert.Equal(t, []string{"rep 1: 1"}, ch.Failures)
	assert.Equal(t, "1 of 1 repetitions failed leaked_handles == 0 (rep 1: 1)", checkDetail(ch))
}

func TestImprovementPasses(t *testing.T) {
	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(float64) float64 { return 500 })
		s.SetMetric(t, comparetest.Compat3s, "throughput", func(v float64) float64 { return 2 * v })
		s.SetMetric(t, comparetest.Reclaim1s, "leaked_handles", func(float64) float64 { return 0 })
		s.SetMetric(t, comparetest.Reclaim1s, "p99_ms", func(v float64) float64 { return v * 1.5 }) // worse, inside x2+20
	})
	r := compareDirs(t, fixture, latest, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	assert.Equal(t, Improved, metric(t, cell(t, r, comparetest.Compat3s), "p99_ms").Verdict)
	assert.Equal(t, Improved, metric(t, cell(t, r, comparetest.Compat3s), "throughput").Verdict)
	assert.Equal(t, Improved, metric(t, cell(t, r, comparetest.Reclaim1s), "leaked_handles").Verdict)
	assert.Equal(t, Same, metric(t, cell(t, r, comparetest.Reclaim1s), "p99_ms").Verdict)
	assert.Equal(t, "no regression in 4 cells (3 improvements)", r.Summary())
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	assert.Regexp(t, `p99_ms +1\.81s n=1 +500ms n=1 +x0\.28 +≤ 3\.64s \(x2\+20\) +improved`, buf.String())
}

func TestMissingCellFails(t *testing.T) {
	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) { s.Drop(comparetest.Reclaim1s) })
	r := compareDirs(t, fixture, latest, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, NotRun, cell(t, r, comparetest.Reclaim1s).Status)
	assert.Equal(t, "1 cell not run in 4 cells", r.Summary())
	assert.Equal(t, []string{comparetest.Reclaim1s + ": cell ran"}, failures(r))

	// A cell whose every run could not start did not run either.
	latest = comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		for _, run := range s.Cell(t, comparetest.Reclaim1s) {
			run.Error = "could not start the daemon"
		}
	})
	r = compareDirs(t, fixture, latest, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, NotRun, cell(t, r, comparetest.Reclaim1s).Status)
	assert.Equal(t, "1 cell not run in 4 cells", r.Summary(), "its runs that could not start are why: counted once")
	assert.Equal(t, []string{comparetest.Reclaim1s + ": cell ran"}, failures(r))

	// No cell started: each counts once.
	latest = comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		for _, run := range s.Runs {
			run.Error = "could not start the daemon"
		}
	})
	r = compareDirs(t, fixture, latest, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, "4 cells not run in 4 cells", r.Summary())
	assert.Len(t, failures(r), 4)
	assert.Equal(t, Counts{NotRun: 4, Cells: 4}, r.Counts())

	// One repetition of two that could not start fails the cell, too.
	latest = comparetest.Doctored(t, fixture, 2, func(s *comparetest.Sweep) { s.Cell(t, comparetest.Reclaim1s)[1].Error = "no daemon" })
	r = compareDirs(t, comparetest.Doctored(t, fixture, 2, nil), latest, Options{})
	assert.True(t, r.Failed())
	c := cell(t, r, comparetest.Reclaim1s)
	assert.Equal(t, Compared, c.Status)
	assert.Equal(t, []string{"rep 2 could not start: no daemon"}, c.Errors)
	assert.Equal(t, []string{comparetest.Reclaim1s + ": repetition started"}, failures(r))
}

func TestCellOnlyInNewIsNotCompared(t *testing.T) {
	base := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) { s.Drop(comparetest.Compat1s) })
	r := compareDirs(t, base, fixture, Options{})
	assert.False(t, r.Failed())
	c := cell(t, r, comparetest.Compat1s)
	assert.Equal(t, OnlyInNew, c.Status)
	assert.Empty(t, c.Metrics)
	assert.Len(t, c.Checks, 5, "its expectations still count")
	assert.Equal(t, "no regression in 3 cells (1 new cell not compared)", r.Summary())
	assert.Equal(t, comparetest.Compat1s, r.Cells[3].Label, "after the baseline's cells")

	// A new cell that fails an expectation fails the comparison.
	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat1s, "evictions", func(float64) float64 { return 0 })
	})
	r = compareDirs(t, base, latest, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, []string{comparetest.Compat1s + ": expect evictions > 0"}, failures(r))
}

func TestFailedExpectation(t *testing.T) {
	noTimeouts := func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Reclaim3s, "receive_timeout", func(float64) float64 { return 0 })
	}
	r := compareDirs(t, fixture, comparetest.Doctored(t, fixture, 1, noTimeouts), Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, "1 failed expectation in 4 cells", r.Summary())
	ch := check(t, cell(t, r, comparetest.Reclaim3s), "receive_timeout >= 1")
	assert.False(t, ch.BaseFailed)
	rows := r.Rows()
	i := indexRow(rows, comparetest.Reclaim3s, "expect receive_timeout >= 1")
	assert.Equal(t, "FAIL", rows[i].Verdict)

	// Failed in both, as often: a warning, not a failure.
	both := comparetest.Doctored(t, fixture, 1, noTimeouts)
	r = compareDirs(t, both, both, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	ch = check(t, cell(t, r, comparetest.Reclaim3s), "receive_timeout >= 1")
	assert.True(t, ch.BaseFailed)
	assert.True(t, ch.AsInBase())
	assert.False(t, ch.Fails())
	rows = r.Rows()
	i = indexRow(rows, comparetest.Reclaim3s, "expect receive_timeout >= 1")
	assert.Equal(t, "warning (as in baseline)", rows[i].Verdict)
	assert.False(t, rows[i].Fail)
	assert.True(t, rows[i].Warn)
	assert.Equal(t, "0/1 passed", rows[i].Base)
	assert.Equal(t, "fails as in the baseline: 1/1 vs 1/1 (rep 1: 0)", rows[i].Detail)
	assert.Equal(t, "no regression in 4 cells (1 expectation failing as in the baseline)", r.Summary())
}

// An expectation the baseline failed too fails the cell only when the new
// sweep fails it in a larger share of its repetitions.
func TestExpectationFailedInTheBaseline(t *testing.T) {
	failIn := func(reps ...int) func(s *comparetest.Sweep) {
		return func(s *comparetest.Sweep) {
			for _, rep := range reps {
				s.Cell(t, comparetest.Reclaim3s)[rep-1].Metrics["receive_timeout"] = 0
			}
		}
	}
	base := comparetest.Doctored(t, fixture, 5, failIn(3))
	for _, tc := range []struct {
		name    string
		latest  string
		fails   bool
		verdict string
		detail  string
	}{
		{"as often", comparetest.Doctored(t, fixture, 5, failIn(5)), false, "warning (as in baseline)", "fails as in the baseline: 1/5 vs 1/5 (rep 5: 0)"},
		{"less often", comparetest.Doctored(t, fixture, 10, failIn(7)), false, "warning (as in baseline)", "fails as in the baseline: 1/10 vs 1/5 (rep 7: 0)"},
		{"more often", comparetest.Doctored(t, fixture, 5, failIn(2, 4)), true, "FAIL (more often than baseline)", "2 of 5 repetitions failed receive_timeout >= 1 (rep 2: 0, rep 4: 0); the baseline failed it less often, in 1 of 5"},
		{"a larger share of fewer runs", comparetest.Doctored(t, fixture, 2, failIn(1)), true, "FAIL (more often than baseline)", "1 of 2 repetitions failed receive_timeout >= 1 (rep 1: 0); the baseline failed it less often, in 1 of 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := compareDirs(t, base, tc.latest, Options{})
			assert.Equal(t, tc.fails, r.Failed(), "%v", failures(r))
			rows := r.Rows()
			i := indexRow(rows, comparetest.Reclaim3s, "expect receive_timeout >= 1")
			require.GreaterOrEqual(t, i, 0)
			assert.Equal(t, tc.verdict, rows[i].Verdict)
			assert.Equal(t, tc.detail, rows[i].Detail)
			assert.Equal(t, tc.fails, rows[i].Fail)
			assert.Equal(t, !tc.fails, rows[i].Warn)

			var buf bytes.Buffer
			require.NoError(t, r.WriteText(&buf))
			prefix := "WARN "
			if tc.fails {
				prefix = "FAIL "
			}
			assert.Contains(t, buf.String(), "\n"+prefix+comparetest.Reclaim3s+": expect receive_timeout >= 1: "+tc.detail+"\n")
		})
	}
}

// A sweep compared with itself passes, whatever failed in it: an
// expectation some repetition failed, a repetition that could not start,
// a cell none of whose repetitions started.
func TestSweepComparedWithItselfPasses(t *testing.T) {
	multi := comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.Cell(t, comparetest.Reclaim3s)[2].Metrics["receive_timeout"] = 0 // fails receive_timeout >= 1
		s.Cell(t, comparetest.Compat3s)[1].Metrics["p99_ms"] *= 3          // a slow repetition
		s.Cell(t, comparetest.Reclaim1s)[3].Error = "could not start the daemon"
	})
	r := compareDirs(t, multi, multi, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	assert.Equal(t, "no regression in 4 cells (1 expectation failing as in the baseline, 1 run that could not start, as in the baseline)", r.Summary())
	var warned []string
	for _, row := range r.Rows() {
		if row.Warn {
			warned = append(warned, row.Cell+": "+row.Item+": "+row.Detail)
		}
	}
	assert.Equal(t, []string{
		comparetest.Reclaim1s + ": repetition started: rep 4 could not start: could not start the daemon; could not start as in the baseline: 1/5 vs 1/5",
		comparetest.Reclaim3s + ": expect receive_timeout >= 1: fails as in the baseline: 1/5 vs 1/5 (rep 3: 0)",
	}, warned)
	for _, c := range r.Cells {
		for _, m := range c.Metrics {
			assert.Contains(t, []Verdict{Same, NotGated}, m.Verdict, "%s %s", c.Label, m.Metric)
		}
	}

	// A cell none of whose repetitions started, in both.
	dead := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		for _, run := range s.Cell(t, comparetest.Compat1s) {
			run.Error = "could not start the daemon"
		}
	})
	r = compareDirs(t, dead, dead, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	assert.Equal(t, "no regression in 3 cells (1 run that could not start, as in the baseline, 1 new cell not compared)", r.Summary())
	// ... but not against a baseline where it ran.
	r = compareDirs(t, fixture, dead, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, "1 cell not run in 4 cells", r.Summary())

	// Every report of a self-comparison passes.
	j := parseJUnit(t, compareDirs(t, multi, multi, Options{}))
	assert.Zero(t, j.Failures)
}

func indexRow(rows []Row, cell, item string) int {
	for i, r := range rows {
		if r.Cell == cell && r.Item == item {
			return i
		}
	}
	return -1
}

// Two clauses expecting the same of one cell are told apart by their
// where clause.
func TestSameExpectationTwice(t *testing.T) {
	r := compareDirs(t, fixture, fixture, Options{})
	var names []string
	for _, ch := range cell(t, r, comparetest.Reclaim3s).Checks {
		names = append(names, ch.Name())
	}
	assert.Contains(t, names, "expect evictions == 0 (where dispatch_failure_policy=reclaim)")
	assert.Contains(t, names, "expect evictions == 0 (where dispatch_timeout=3s)")
	assert.Contains(t, names, "expect findings == 0")
	assert.Contains(t, names, "expect error_rate < 0.15")
}

func TestTolerancePrecedence(t *testing.T) {
	p99x3 := func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
	}
	latest := comparetest.Doctored(t, fixture, 1, p99x3)

	// A flag turns the gate off: shown, not gated.
	off, err := scenarios.ParseTolerance("off")
	require.NoError(t, err)
	r := compareDirs(t, fixture, latest, Options{Tolerances: map[string]scenarios.Tolerance{"p99_ms": off}})
	assert.False(t, r.Failed())
	m := metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, NotGated, m.Verdict)
	assert.Equal(t, FromFlag, m.Source)
	assert.Equal(t, "+3.62s", change(m), "shown, as a difference: off has no ratio")
	assert.Equal(t, "off", limit(m))

	// The scenario's compare section loosens it, and adds a metric.
	withSection := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		p99x3(s)
		s.Manifest.ScenarioText += "compare:\n  p99_ms: x4\n  max_pending: +0\n"
	})
	r = compareDirs(t, fixture, withSection, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	m = metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, FromScenario, m.Source)
	assert.Equal(t, "x4", m.Tolerance.Text)
	assert.Equal(t, Same, metric(t, cell(t, r, comparetest.Compat3s), "max_pending").Verdict)
	assert.Equal(t, []string{"the scenario text differs between the sweeps: cells are compared by label, with the new sweep's expectations and tolerances"}, r.Notes)

	// A flag beats the section.
	x2, err := scenarios.ParseTolerance("x2")
	require.NoError(t, err)
	r = compareDirs(t, fixture, withSection, Options{Tolerances: map[string]scenarios.Tolerance{"p99_ms": x2}})
	assert.True(t, r.Failed())
	assert.Equal(t, []string{comparetest.Compat3s + ": p99_ms"}, failures(r))

	// The baseline's section counts when the new text no longer parses.
	base := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) { s.Manifest.ScenarioText += "compare:\n  p99_ms: x4\n" })
	broken := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		p99x3(s)
		s.Manifest.ScenarioText += "no_such_key: 1\n"
	})
	r = compareDirs(t, base, broken, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	require.Len(t, r.Notes, 2)
	assert.Contains(t, r.Notes[1], "the new sweep's scenario text no longer parses")
	assert.Contains(t, r.Notes[1], "tolerances from the baseline's")
}

// With four repetitions or more a side, a regression must also be
// significant: one bad repetition is noise, all of them is not.
func TestRepetitionsAndSignificance(t *testing.T) {
	base := comparetest.Doctored(t, fixture, 5, nil)

	r := compareDirs(t, base, comparetest.Doctored(t, fixture, 5, nil), Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	m := metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, 5, m.Base.N())
	assert.False(t, math.IsNaN(m.P))
	assert.Equal(t, 1.0, m.P)
	assert.Equal(t, "~ p=1.000", change(m))
	assert.Equal(t, "1.81s ±2% n=5", stat("p99_ms", m.Base))

	// Every repetition three times slower: past the limit and significant.
	r = compareDirs(t, base, comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
	}), Options{})
	m = metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, Regressed, m.Verdict)
	assert.InDelta(t, 2.0/252, m.P, 1e-12, "5 against 5, separated")
	assert.Equal(t, "x3.00 p=0.008", change(m))

	// One slow repetition of five: the median does not move.
	r = compareDirs(t, base, comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.Cell(t, comparetest.Compat3s)[2].Metrics["p99_ms"] *= 3
	}), Options{})
	assert.Equal(t, Same, metric(t, cell(t, r, comparetest.Compat3s), "p99_ms").Verdict)

	// Three slow repetitions and two fast ones: the median is past the
	// limit, but the samples overlap: not significant, not a regression
	// (TestNotSignificantIsShown).
	r = compareDirs(t, base, comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		runs := s.Cell(t, comparetest.Compat3s)
		for i, run := range runs {
			if i < 3 {
				run.Metrics["p99_ms"] *= 3
			} else {
				run.Metrics["p99_ms"] /= 3
			}
		}
	}), Options{})
	m = metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, Same, m.Verdict)
	assert.Greater(t, m.New.Median, m.Limit)
	assert.Greater(t, m.P, Alpha)
	assert.Contains(t, m.Note, "do not differ significantly")
	assert.True(t, m.NotSignificant)
	assert.False(t, r.Failed())

	// An exact metric takes no test: one leak in one repetition fails.
	r = compareDirs(t, base, comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.Cell(t, comparetest.Compat3s)[4].Metrics["leaked_handles"] = 1
	}), Options{})
	m = metric(t, cell(t, r, comparetest.Compat3s), "leaked_handles")
	assert.Equal(t, Regressed, m.Verdict)
	assert.True(t, math.IsNaN(m.P))
	assert.Equal(t, 0.0, m.New.Median, "the median did not move; the worst did")

	// Three repetitions against five: no test, the median decides.
	r = compareDirs(t, comparetest.Doctored(t, fixture, 3, nil), comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
	}), Options{})
	m = metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	assert.Equal(t, Regressed, m.Verdict)
	assert.True(t, math.IsNaN(m.P))
}

func TestCompareRefusesOtherScenarios(t *testing.T) {
	other := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		s.Manifest.Scenario = "other"
		for _, r := range s.Runs {
			r.Scenario = "other"
		}
	})
	_, err := Load(fixture, other, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `is a sweep of scenario "ci-regression" but`)
	assert.Contains(t, err.Error(), `is of "other": compare sweeps of one scenario`)

	_, err = Load(t.TempDir(), fixture, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "baseline: ")
	assert.Contains(t, err.Error(), "no manifest: is this a directory portshare tune wrote?")

	empty := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) { s.Runs = nil })
	_, err = Load(empty, fixture, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the baseline has no run")
}

func TestParseToleranceFlags(t *testing.T) {
	got, err := ParseToleranceFlags([]string{"p99_ms=off", "error_rate=+0.1", "max_ms=x3+100"})
	require.NoError(t, err)
	assert.Equal(t, map[string]scenarios.Tolerance{
		"p99_ms":     {Text: "off", Off: true, Ratio: 1},
		"error_rate": {Text: "+0.1", Ratio: 1, Abs: 0.1},
		"max_ms":     {Text: "x3+100", Ratio: 3, Abs: 100},
	}, got)
	for arg, want := range map[string]string{
		"p99_ms":       "want METRIC=TOL",
		"p99=x2":       `unknown metric "p99"`,
		"p99_ms=2x":    scenarios.ToleranceForms,
		"sessions=x2":  "never gated",
		"p99_ms=x0.5":  "a ratio below 1",
		"error_rate=1": "+1",
	} {
		_, err := ParseToleranceFlags([]string{arg})
		require.Error(t, err, arg)
		assert.Contains(t, err.Error(), want, arg)
		assert.NotContains(t, err.Error(), "\n")
	}
	_, err = ParseToleranceFlags([]string{"p99_ms=x2", "p99_ms=x3"})
	require.ErrorContains(t, err, "p99_ms given twice")
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 67: "67", 0.0447761: "0.0448", 0.4776: "0.478", 1.5: "1.5", 40.383: "40.4", 1809.407: "1809", -0.25: "-0.25", math.NaN(): "-"} {
		assert.Equal(t, want, value("errors", v), "%g", v)
	}
	assert.Equal(t, "1.81s", value("p99_ms", 1809.407))
	assert.Equal(t, "40.4ms", value("p50_ms", 40.383))
	assert.Equal(t, "13.4/s", value("throughput", 13.4))
	assert.Equal(t, "-3.62s", delta("p99_ms", -3620))
	assert.Equal(t, "-", stat("p99_ms", reports.Summarize(nil)))
	assert.Equal(t, "10 ±50% n=3", stat("errors", reports.Summarize([]float64{5, 10, 12})))
}

func parseJUnit(t *testing.T, r *Result) comparetest.JUnit {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, r.WriteJUnit(&buf))
	return comparetest.ParseJUnit(t, buf.Bytes())
}

// The JUnit report parses, has a test case per cell × check, and fails
// the ones that failed; characters XML cannot carry are replaced.
func TestJUnit(t *testing.T) {
	parse := func(r *Result) comparetest.JUnit { return parseJUnit(t, r) }

	j := parse(compareDirs(t, fixture, fixture, Options{}))
	require.Len(t, j.Suites, 1)
	s := j.Suites[0]
	assert.Equal(t, "ci-regression", s.Name)
	// Per cell: "cell ran", 10 gated metrics, and its expectations
	// (5, 5, 8 and 11 of them).
	assert.Equal(t, 4*11+5+5+8+11, s.Tests)
	assert.Len(t, s.Cases, s.Tests)
	assert.Equal(t, s.Tests, j.Tests)
	assert.Zero(t, s.Failures)
	assert.Equal(t, comparetest.Compat1s, s.Cases[0].Classname)
	assert.Equal(t, "cell ran", s.Cases[0].Name)
	assert.Equal(t, "error_rate", s.Cases[1].Name)

	// A regression, a failed expectation, a missing cell, and a run error
	// full of control characters.
	latest := comparetest.Doctored(t, fixture, 2, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "leaked_handles", func(float64) float64 { return 1 })
		s.Drop(comparetest.Reclaim1s)
		s.Cell(t, comparetest.Reclaim3s)[1].Error = "bad\x00byte \x1b[31mred\x1b[0m \xff"
	})
	r := compareDirs(t, comparetest.Doctored(t, fixture, 2, nil), latest, Options{})
	j = parse(r)
	s = j.Suites[0]
	assert.Equal(t, 4, s.Failures)
	assert.Equal(t, 4, j.Failures)
	var failed []string
	for _, c := range s.Cases {
		if c.Failure != nil {
			failed = append(failed, c.Classname+": "+c.Name)
			assert.NotEmpty(t, c.Failure.Message)
			assert.NotEmpty(t, c.Failure.Text)
		}
	}
	assert.Equal(t, []string{
		comparetest.Compat3s + ": leaked_handles",
		comparetest.Compat3s + ": expect leaked_handles == 0",
		comparetest.Reclaim1s + ": cell ran",
		comparetest.Reclaim3s + ": cell ran",
	}, failed)
	assert.Equal(t, 4*11-10+5+5+11, s.Tests, "the missing cell has one case")
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, compareDirs(t, fixture, fixture, Options{}).WriteMarkdown(&buf))
	md := buf.String()
	assert.True(t, strings.HasPrefix(md, "### ✅ ci-regression: no regression in 4 cells\n"), md)
	assert.Contains(t, md, "<details><summary>Every comparison: 69 rows in 4 cells</summary>")
	assert.Contains(t, md, "| `"+comparetest.Compat1s+"` | error_rate | 0.478 n=1 | 0.478 n=1 | ~ | ≤ 0.528 \\(+0.05\\) | ok |\n|  | throughput |")
	assert.Contains(t, md, "| expect error_rate &lt; 0.15 |", "HTML escaped")
	assert.True(t, strings.HasSuffix(md, "</details>\n"))

	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", func(v float64) float64 { return 3 * v })
		s.Manifest.ScenarioText += "# changed\n"
	})
	buf.Reset()
	require.NoError(t, compareDirs(t, fixture, latest, Options{}).WriteMarkdown(&buf))
	md = buf.String()
	assert.True(t, strings.HasPrefix(md, "### ❌ ci-regression: 1 regression in 4 cells\n"), md)
	failures, details, ok := strings.Cut(md, "<details>")
	require.True(t, ok)
	assert.Contains(t, failures, "> **Note:** the scenario text differs")
	assert.Contains(t, failures, "| `"+comparetest.Compat3s+"` | p99_ms | 1.81s n=1 | 5.43s n=1 | x3.00 | ≤ 3.64s \\(x2+20\\) | **REGRESSION** |")
	assert.Equal(t, 1, strings.Count(failures, "| `"), "one failure row")
	assert.Contains(t, details, "**REGRESSION**")
}

func TestMarkdownEscapes(t *testing.T) {
	assert.Equal(t, "a \\| b &lt;c&gt; &amp; \\*d\\* \\`e\\` f \\\\", mdText("a | b <c> & *d* `e`\nf \\"))
	assert.Equal(t, `\!\[x\]\(https://host/p.png\)`, mdText("![x](https://host/p.png)"))
	assert.Equal(t, "`x=a\\|b`", mdCode("x=a|b"))
	assert.Equal(t, "`x=![x](https://host/p.png)`", mdCode("x=![x](https://host/p.png)"), "a code span shows it as text")
}

// Text from the inputs cannot put an image, a link or HTML in a pull
// request comment: a --set value in a note, a host, a run's error.
func TestMarkdownInputsStayText(t *testing.T) {
	const img = "![x](https://host/p.png)"
	noDaemon := func(s *comparetest.Sweep) { s.Cell(t, comparetest.Reclaim3s)[1].Error = "no daemon: " + img }
	latest := comparetest.Doctored(t, fixture, 2, func(s *comparetest.Sweep) {
		noDaemon(s)
		s.Manifest.Set = []string{"load.rate=" + img}
		s.Manifest.Machine.Host = "[host](https://host/) <img src=x>"
	})
	var buf bytes.Buffer
	r := compareDirs(t, comparetest.Doctored(t, fixture, 2, noDaemon), latest, Options{})
	require.NoError(t, r.WriteMarkdown(&buf))
	md := buf.String()
	for _, bad := range []string{"![", "](", "<img", "[host]"} {
		assert.NotContains(t, md, bad)
	}
	assert.Contains(t, md, `the --set flags differ: baseline \[\], new \["load.rate=\!\[x\]\(https://host/p.png\)"\]`)
	assert.Contains(t, md, `on \[host\]\(https://host/\) &lt;img src=x&gt;.`)
	// The warning carries the run's error.
	assert.Contains(t, md, "- ⚠️ `"+comparetest.Reclaim3s+"`: repetition started: rep 2 could not start: no daemon: \\!\\[x\\]\\(https://host/p.png\\); could not start as in the baseline: 1/2 vs 1/2\n")
}

// exact compares worst with worst only over a baseline worst of zero;
// over a count the baseline already had, it is x1.5+2 on the median, so
// that a new sweep of more repetitions, drawing a higher worst, passes.
func TestExactOverNonZeroBaseline(t *testing.T) {
	// Five repetitions against the one-run baseline: comparetest moves the
	// non-zero counts by one, so the new worst leak is 3 against 2 in
	// compat's 1 s cell and 4 against 3 in reclaim's.
	five := comparetest.Doctored(t, fixture, 5, nil)
	r := compareDirs(t, fixture, five, Options{})
	assert.False(t, r.Failed(), "%v", failures(r))
	for label, want := range map[string]struct {
		baseWorst, newWorst float64
		limit               string
	}{
		comparetest.Compat1s:  {2, 3, "≤ 5 (exact: x1.5+2 over a non-zero baseline)"},
		comparetest.Reclaim1s: {3, 4, "≤ 6.5 (exact: x1.5+2 over a non-zero baseline)"},
	} {
		m := metric(t, cell(t, r, label), "leaked_handles")
		assert.Equal(t, Same, m.Verdict, detail(m))
		assert.Equal(t, want.baseWorst, m.BaseWorst, label)
		assert.Equal(t, want.newWorst, m.NewWorst, label)
		assert.Equal(t, want.limit, limit(m), label)
		assert.False(t, m.OnWorst())
		assert.Equal(t, scenarios.ExactOverNonZero, m.Applied)
		assert.Equal(t, "exact", m.Tolerance.Text)
	}
	// A zero stays exact: worst against worst.
	m := metric(t, cell(t, r, comparetest.Compat3s), "leaked_handles")
	assert.True(t, m.OnWorst())
	assert.Equal(t, "worst ≤ 0 (exact)", limit(m))
	assert.Equal(t, m.Tolerance, m.Applied)
	for _, c := range r.Cells {
		for _, ch := range c.Checks {
			assert.False(t, ch.Failed(), "%s: %s", c.Label, ch.Name())
		}
	}

	// Inside the limit, past it, and better by the mirror of it.
	for _, tc := range []struct {
		leaked  float64
		verdict Verdict
		change  string
		detail  string
	}{
		{6, Same, "~", "median 6, limit 6.5 (baseline's worst 3, tolerance exact: x1.5+2 over a non-zero baseline)"},
		{7, Regressed, "+4", "median 7 is above the limit 6.5 (baseline's worst 3, tolerance exact: x1.5+2 over a non-zero baseline)"},
		{0, Improved, "-3", "median 0, limit 6.5 (baseline's worst 3, tolerance exact: x1.5+2 over a non-zero baseline)"},
	} {
		r := compareDirs(t, fixture, comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
			s.SetMetric(t, comparetest.Reclaim1s, "leaked_handles", func(float64) float64 { return tc.leaked })
		}), Options{})
		m := metric(t, cell(t, r, comparetest.Reclaim1s), "leaked_handles")
		assert.Equal(t, tc.verdict, m.Verdict, "%g", tc.leaked)
		assert.Equal(t, tc.change, change(m), "%g", tc.leaked)
		assert.Equal(t, tc.detail, detail(m), "%g", tc.leaked)
		assert.Equal(t, tc.verdict == Regressed, r.Failed(), "%g", tc.leaked)
	}

	// With four repetitions a side it takes the U test like the others.
	r = compareDirs(t, five, comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Reclaim1s, "leaked_handles", func(v float64) float64 { return v + 10 })
	}), Options{})
	m = metric(t, cell(t, r, comparetest.Reclaim1s), "leaked_handles")
	assert.Equal(t, Regressed, m.Verdict)
	assert.Less(t, m.P, Alpha)
	assert.Equal(t, fmt.Sprintf("+10 p=%.3f", m.P), change(m))
}

// comparetest varies the non-zero counts between repetitions, never to or
// from zero.
func TestDoctoredRepetitionsVaryCounts(t *testing.T) {
	s := comparetest.Read(t, fixture, 5)
	var leaks []float64
	for _, run := range s.Cell(t, comparetest.Compat1s) {
		leaks = append(leaks, run.Metrics["leaked_handles"])
	}
	assert.Equal(t, []float64{2, 3, 1, 2, 3}, leaks)
	for _, run := range s.Cell(t, comparetest.Compat3s) {
		assert.Zero(t, run.Metrics["leaked_handles"])
	}
}

// A median past the limit that the U test lets pass says so in its
// verdict, in every output.
func TestNotSignificantIsShown(t *testing.T) {
	r := compareDirs(t, comparetest.Doctored(t, fixture, 5, nil), comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		for i, run := range s.Cell(t, comparetest.Compat3s) {
			if i < 3 {
				run.Metrics["p99_ms"] *= 3
			} else {
				run.Metrics["p99_ms"] /= 3
			}
		}
	}), Options{})
	assert.False(t, r.Failed())
	m := metric(t, cell(t, r, comparetest.Compat3s), "p99_ms")
	require.True(t, m.NotSignificant)
	// Two new repetitions below every baseline one and three above: U is
	// 10 of 25, and 87 of the 252 orderings of 5 against 5 have U ≤ 10.
	assert.InDelta(t, 2*87.0/252, m.P, 1e-12)
	const want = "ok (not significant, p=0.690)"
	assert.Equal(t, want, verdict(m))
	assert.Equal(t, "x2.97 p=0.690", change(m), "the change past the limit, not ~")

	rows := r.Rows()
	i := indexRow(rows, comparetest.Compat3s, "p99_ms")
	assert.Equal(t, want, rows[i].Verdict)
	assert.False(t, rows[i].Fail)

	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	assert.Regexp(t, `\n +p99_ms +1\.81s ±2% n=5 +5\.37s ±89% n=5 +x2\.97 p=0\.690 +≤ 3\.71s \(x2\+20\) +`+regexp.QuoteMeta(want)+`\n`, buf.String())

	buf.Reset()
	require.NoError(t, r.WriteMarkdown(&buf))
	assert.Contains(t, buf.String(), "| p99_ms | 1.81s ±2% n=5 | ")
	assert.Contains(t, buf.String(), " | "+mdText(want)+" |\n")

	j := parseJUnit(t, r)
	var out string
	for _, c := range j.Suites[0].Cases {
		if c.Classname == comparetest.Compat3s && c.Name == "p99_ms" {
			out = c.SystemOut
			assert.Nil(t, c.Failure)
		}
	}
	assert.Contains(t, out, "limit ≤ 3.71s (x2+20): "+want+"; median past the limit, but the repetitions do not differ significantly")
}

// Warnings pass in JUnit, with what they warn of as the case's
// system-out.
func TestJUnitWarnings(t *testing.T) {
	sweep := comparetest.Doctored(t, fixture, 5, func(s *comparetest.Sweep) {
		s.Cell(t, comparetest.Reclaim3s)[2].Metrics["receive_timeout"] = 0
		s.Cell(t, comparetest.Reclaim1s)[3].Error = "no daemon"
	})
	j := parseJUnit(t, compareDirs(t, sweep, sweep, Options{}))
	assert.Zero(t, j.Failures)
	outs := map[string]string{}
	for _, c := range j.Suites[0].Cases {
		assert.Nil(t, c.Failure, "%s: %s", c.Classname, c.Name)
		outs[c.Classname+": "+c.Name] = c.SystemOut
	}
	assert.Equal(t, "warning: fails as in the baseline: 1/5 vs 1/5 (rep 3: 0)", outs[comparetest.Reclaim3s+": expect receive_timeout >= 1"])
	assert.Equal(t, "warning: could not start as in the baseline: 1/5 vs 1/5\nrep 4 could not start: no daemon", outs[comparetest.Reclaim1s+": cell ran"])
}

// A gated metric the new runs no longer measure fails the gate: a build
// that stopped counting leaked handles must not pass for it.
func TestUnmeasuredMetricFails(t *testing.T) {
	latest := comparetest.Doctored(t, fixture, 1, func(s *comparetest.Sweep) {
		for _, run := range s.Cell(t, comparetest.Reclaim1s) {
			delete(run.Metrics, "leaked_handles")
		}
	})
	r := compareDirs(t, fixture, latest, Options{})
	assert.True(t, r.Failed())
	assert.Equal(t, []string{comparetest.Reclaim1s + ": leaked_handles"}, failures(r))
	m := metric(t, cell(t, r, comparetest.Reclaim1s), "leaked_handles")
	assert.True(t, m.Unmeasured)
	assert.Equal(t, Regressed, m.Verdict)
	assert.Equal(t, "the baseline measured it (worst 3), the new runs did not", detail(m))
}
