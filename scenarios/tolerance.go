package scenarios

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ToleranceForms names the forms ParseTolerance reads, for error
// messages.
const ToleranceForms = "exact, off, +A (absolute slack), xR (ratio) or xR+A, such as +0.05, x1.5 or x2+20"

// A Tolerance is how much worse a metric may get from one sweep to the
// next before `portshare compare` calls it a regression (package
// reports/compare applies it). The limit is computed from the baseline's
// worst repetition: worst×Ratio + Abs where higher is worse, worst/Ratio −
// Abs where lower is worse (LowerIsWorse).
type Tolerance struct {
	Text string // as written, canonical for the zero forms ("exact", "off")
	Off  bool   // shown, not gated
	// Exact is for counts that must stay zero: over a baseline whose
	// worst repetition is 0, every new repetition must be no worse than 0;
	// over any other baseline, the tolerance is ExactOverNonZero.
	Exact bool
	Ratio float64 // ≥ 1; 1 when the form gives none
	Abs   float64 // ≥ 0; 0 when the form gives none
}

// ExactOverNonZero is what an exact tolerance applies over a baseline
// whose worst repetition is not zero: a count that already happens there
// (leaked handles in a cell that leaks on purpose) varies from run to
// run, and more repetitions draw a higher worst.
var ExactOverNonZero = Tolerance{Text: "x1.5+2", Ratio: 1.5, Abs: 2}

func (t Tolerance) String() string { return t.Text }

// ParseTolerance reads one tolerance: "exact", "off", "+A", "xR" or
// "xR+A", with R ≥ 1 and A ≥ 0 finite numbers. Anything else is an error
// that lists the valid forms.
func ParseTolerance(text string) (Tolerance, error) {
	s := strings.TrimSpace(text)
	bad := func(why string) (Tolerance, error) {
		if why != "" {
			why += "; "
		}
		return Tolerance{}, fmt.Errorf("tolerance %q: %swant %s", text, why, ToleranceForms)
	}
	switch s {
	case "exact":
		return Tolerance{Text: s, Exact: true, Ratio: 1}, nil
	case "off":
		return Tolerance{Text: s, Off: true, Ratio: 1}, nil
	case "":
		return bad("")
	}
	t := Tolerance{Text: s, Ratio: 1}
	rest := s
	if r, ok := strings.CutPrefix(rest, "x"); ok {
		num, abs, hasAbs := strings.Cut(r, "+")
		v, err := number(num)
		if err != nil {
			return bad("")
		}
		if v < 1 {
			// Below 1 the limit would be better than the baseline: an
			// unchanged sweep would fail.
			return bad("a ratio below 1 fails an unchanged sweep")
		}
		t.Ratio = v
		if !hasAbs {
			return t, nil
		}
		rest = "+" + abs
	}
	a, ok := strings.CutPrefix(rest, "+")
	if !ok {
		if _, err := number(rest); err == nil {
			return bad(fmt.Sprintf("write an absolute slack with its sign, +%s", rest))
		}
		return bad("")
	}
	v, err := number(a)
	if err != nil || strings.HasPrefix(a, "-") || strings.HasPrefix(a, "+") {
		return bad("")
	}
	t.Abs = v
	return t, nil
}

// number parses a finite, non-negative decimal number.
func number(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || strings.ContainsAny(s, "xXpP_") {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// ParseMetricTolerance reads the tolerance of one metric of MetricNames.
// An unknown metric, a bad tolerance, or a gate on sessions (the load
// offered, not a result: "off" only) is an error.
func ParseMetricTolerance(metric, text string) (Tolerance, error) {
	if !IsMetric(metric) {
		return Tolerance{}, fmt.Errorf("unknown metric %q (known: %s)", metric, strings.Join(metricList(), ", "))
	}
	t, err := ParseTolerance(text)
	if err != nil {
		return Tolerance{}, fmt.Errorf("%s: %v", metric, err)
	}
	if metric == "sessions" && !t.Off {
		return Tolerance{}, fmt.Errorf("sessions: never gated (it is what the load offered): give off to show it, or gate ok or throughput")
	}
	return t, nil
}

// IsMetric reports whether name is one of MetricNames.
func IsMetric(name string) bool {
	return slices.ContainsFunc(MetricNames, func(n struct{ Name, Help string }) bool { return n.Name == name })
}

func metricList() []string {
	names := make([]string, len(MetricNames))
	for i, n := range MetricNames {
		names[i] = n.Name
	}
	return names
}

// LowerIsWorse reports the metrics for which less is a regression: the
// sessions that succeeded and the rate they succeeded at. Every other
// metric counts something bad, or a latency.
func LowerIsWorse(metric string) bool {
	return metric == "ok" || metric == "throughput" || metric == "dispatched"
}

// DefaultTolerances are the metrics `portshare compare` gates when neither
// the scenario's compare section nor a flag says otherwise: the counts of
// things that must not happen more, the error rate, the tail latency and
// the throughput. Other metrics are compared only when named.
func DefaultTolerances() map[string]Tolerance {
	out := map[string]Tolerance{}
	for metric, text := range map[string]string{
		"leaked_handles":    "exact",
		"dispatch_timeout":  "exact",
		"evictions":         "exact",
		"dispatch_error":    "exact",
		"ledger_violations": "exact",
		"fd_violations":     "exact",
		"findings":          "exact",
		"error_rate":        "+0.05",
		"p99_ms":            "x2+20",
		"throughput":        "x1.5",
	} {
		t, err := ParseMetricTolerance(metric, text)
		if err != nil {
			panic(err) // the table above is wrong
		}
		out[metric] = t
	}
	return out
}
