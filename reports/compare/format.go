package compare

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/portshare/portshare/reports"
)

// value prints a metric's value (reports.Number) with its unit:
// latencies as reports.MillisCompact, throughput per second; "-" for none.
func value(metric string, v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case strings.HasSuffix(metric, "_ms"):
		return reports.MillisCompact(v)
	case metric == "throughput":
		return reports.Number(v) + "/s"
	}
	return reports.Number(v)
}

// delta prints a signed difference in the metric's unit.
func delta(metric string, d float64) string {
	if d < 0 {
		return "-" + value(metric, -d)
	}
	return "+" + value(metric, d)
}

// stat prints a median as benchstat does, with its spread and the number
// of repetitions: "1.81s ±4% n=5".
func stat(metric string, s reports.Stat) string {
	if s.N() == 0 {
		return "-"
	}
	out := value(metric, s.Median)
	if sp := s.Spread(); sp > 0 {
		out += fmt.Sprintf(" ±%.0f%%", sp*100)
	}
	return fmt.Sprintf("%s n=%d", out, s.N())
}

// change prints how the metric moved, as its tolerance measures it: the
// worst repetition's difference for exact over a zero baseline worst, the
// medians' difference for exact over another (counts) and for an absolute
// tolerance, their ratio for a ratio tolerance; "~" inside the tolerance
// (and not past the limit), and the U test's p when it was computed.
func change(m MetricResult) string {
	var s string
	a := m.Applied
	switch {
	case m.Verdict == Same && !m.NotSignificant:
		s = "~"
	case m.OnWorst():
		s = "worst " + delta(m.Metric, m.NewWorst-m.BaseWorst)
	case m.New.Median == m.Base.Median:
		s = "="
	case !m.Tolerance.Exact && a.Ratio != 1 && m.Base.Median != 0:
		s = "x" + strconv.FormatFloat(m.New.Median/m.Base.Median, 'f', 2, 64)
	default:
		s = delta(m.Metric, m.New.Median-m.Base.Median)
	}
	if !math.IsNaN(m.P) {
		s += fmt.Sprintf(" p=%.3f", m.P)
	}
	return s
}

// tolerance names the tolerance that set the limit.
func tolerance(m MetricResult) string {
	if m.Tolerance.Exact && !m.OnWorst() {
		return "exact: " + m.Applied.Text + " over a non-zero baseline"
	}
	return m.Tolerance.Text
}

// limit prints what the new sweep may not pass, with the tolerance:
// "worst ≤ 0 (exact)", "≤ 6.5 (exact: x1.5+2 over a non-zero baseline)",
// "≤ 3.64s (x2+20)".
func limit(m MetricResult) string {
	t := m.Tolerance
	if m.Verdict == NotGated {
		if m.Metric == "sessions" && !t.Off {
			return "never gated"
		}
		return "off"
	}
	op := "≤"
	if m.LowerIsWorse {
		op = "≥"
	}
	if m.OnWorst() {
		return fmt.Sprintf("worst %s %s (exact)", op, value(m.Metric, m.Limit))
	}
	return fmt.Sprintf("%s %s (%s)", op, value(m.Metric, m.Limit), tolerance(m))
}

// verdict prints a metric's verdict: "ok (not significant, p=0.151)" for a
// median past the limit that the U test lets pass.
func verdict(m MetricResult) string {
	if m.NotSignificant {
		return fmt.Sprintf("ok (not significant, p=%.3f)", m.P)
	}
	return m.Verdict.String()
}

// detail explains a metric's verdict in a sentence, for failure messages.
func detail(m MetricResult) string {
	dir, past := "higher", "above"
	if m.LowerIsWorse {
		dir, past = "lower", "below"
	}
	var s string
	switch {
	case m.Unmeasured:
		s = fmt.Sprintf("the baseline measured it (worst %s), the new runs did not", value(m.Metric, m.BaseWorst))
	case m.OnWorst():
		s = fmt.Sprintf("worst repetition %s, baseline's worst %s (exact: must not be %s)", value(m.Metric, m.NewWorst), value(m.Metric, m.BaseWorst), dir)
	case m.Verdict == Regressed:
		s = fmt.Sprintf("median %s is %s the limit %s (baseline's worst %s, tolerance %s)", value(m.Metric, m.New.Median), past, value(m.Metric, m.Limit), value(m.Metric, m.BaseWorst), tolerance(m))
	default:
		s = fmt.Sprintf("median %s, limit %s (baseline's worst %s, tolerance %s)", value(m.Metric, m.New.Median), value(m.Metric, m.Limit), value(m.Metric, m.BaseWorst), tolerance(m))
	}
	if !math.IsNaN(m.P) {
		s += fmt.Sprintf("; Mann–Whitney U p=%.3f", m.P)
	}
	if m.Note != "" {
		s += "; " + m.Note
	}
	return s
}

// checkDetail explains a failed expectation: "2 of 5 repetitions failed
// X (rep 2: 0, rep 4: 0)", and how often the baseline failed it if it did.
func checkDetail(c CheckResult) string {
	s := fmt.Sprintf("%d of %d repetitions failed %s (%s)", c.Runs-c.Passed, c.Runs, c.Expect, strings.Join(c.Failures, ", "))
	if c.BaseFailed {
		s += fmt.Sprintf("; the baseline failed it less often, in %d of %d", c.BaseRuns-c.BasePassed, c.BaseRuns)
	}
	return s
}

// asInBase is a warning: what new repetitions did no more often than the
// baseline's, "fails as in the baseline: 1/5 vs 1/5" (the new sweep's
// share first).
func asInBase(did string, n, runs, baseN, baseRuns int) string {
	return fmt.Sprintf("%s as in the baseline: %d/%d vs %d/%d", did, n, runs, baseN, baseRuns)
}

// checkWarning explains an expectation failed as in the baseline, and by
// which repetitions.
func checkWarning(c CheckResult) string {
	return fmt.Sprintf("%s (%s)", asInBase("fails", c.Runs-c.Passed, c.Runs, c.BaseRuns-c.BasePassed, c.BaseRuns), strings.Join(c.Failures, ", "))
}
