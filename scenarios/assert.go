package scenarios

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MetricNames are the measures of a run that expectations compare, with
// what each is. The runner computes every one for every run; sessions
// count the normal clients only (sessions of client faults are apart).
var MetricNames = []struct{ Name, Help string }{
	{"sessions", "sessions the normal clients started"},
	{"ok", "sessions that ended ok"},
	{"errors", "sessions that did not end ok"},
	{"error_rate", "errors / sessions (0 when there were no sessions)"},
	{"throughput", "ok sessions per second of load"},
	{"p50_ms", "median session latency, from the intended start, in ms"},
	{"p90_ms", "90th percentile latency, ms"},
	{"p99_ms", "99th percentile latency, ms"},
	{"p999_ms", "99.9th percentile latency, ms"},
	{"max_ms", "slowest session, ms"},
	{"late_sends", "open model: sessions the generator started late"},
	{"leaked_handles", "dispatch timeouts: the leaked-handle event (summed over daemon restarts)"},
	{"dispatched", "ledger: connections handed to a worker"},
	{"no_route", "ledger: connections for no registered route"},
	{"protocol_failure", "ledger: bad preamble, request head or ClientHello"},
	{"receive_timeout", "ledger: no routing key within receive_timeout"},
	{"queue_full", "ledger: a route's queue was full"},
	{"queue_timeout", "ledger: waited in a queue past queue_timeout (reclaim)"},
	{"dispatch_timeout", "ledger: the same as leaked_handles"},
	{"dispatch_error", "ledger: the hand-off failed (worker gone, queue aborted)"},
	{"shutdown", "ledger: closed by the daemon stopping"},
	{"evictions", "workers the daemon dropped after a dispatch timeout (compat)"},
	{"max_pending", "most connections accepted but not handed off, as sampled"},
	{"max_queued", "most connections waiting in route queues, as sampled"},
	{"listen_overflows", "kernel TcpExt ListenOverflows during the run (the backlog was full)"},
	{"listen_drops", "kernel TcpExt ListenDrops during the run"},
	{"open_after_drain", "connections the daemon still held when the drain ended (compat's queues never expire)"},
	{"ledger_violations", "the ledger did not balance: accepted ≠ outcomes + open"},
	{"fd_violations", "the daemon's descriptor count did not return to its baseline"},
	{"findings", "every finding: ledger and fd violations, processes that failed, faults not applied or undone, a run that could not start"},
}

// An Expectation is one line of an assertion's expect list:
// METRIC OP NUMBER, where METRIC is a name of MetricNames,
// count(CLASS) or share(CLASS) of a load outcome class, and OP one of
// == != < <= > >=.
type Expectation struct {
	Text   string
	Metric string // a name of MetricNames, or "count" / "share"
	Class  string // the outcome class of count and share
	Op     string
	Value  float64
}

var expectRE = regexp.MustCompile(`^\s*([a-z0-9_]+)(?:\(\s*([^()\s]+)\s*\))?\s*(==|!=|<=|>=|<|>)\s*(\S+)\s*$`)

// ParseExpectation reads "p99_ms < 500", "leaked_handles == 0" or
// "share(fault:ServerTooBusy) < 0.05".
func ParseExpectation(text string) (Expectation, error) {
	m := expectRE.FindStringSubmatch(text)
	if m == nil {
		return Expectation{}, fmt.Errorf("%q: want METRIC OP NUMBER, such as \"p99_ms < 500\" or \"share(reset) <= 0.01\"", text)
	}
	x := Expectation{Text: strings.TrimSpace(text), Metric: m[1], Class: m[2], Op: m[3]}
	v, err := strconv.ParseFloat(m[4], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return Expectation{}, fmt.Errorf("%q: %q is not a number", text, m[4])
	}
	x.Value = v
	switch {
	case x.Metric == "count" || x.Metric == "share":
		if x.Class == "" {
			return Expectation{}, fmt.Errorf("%q: %s takes an outcome class, such as %s(reset) or %s(http:503)", text, x.Metric, x.Metric, x.Metric)
		}
	case x.Class != "":
		return Expectation{}, fmt.Errorf("%q: only count(CLASS) and share(CLASS) take an argument", text)
	case !IsMetric(x.Metric):
		return Expectation{}, fmt.Errorf("%q: unknown metric %q (known: %s, count(CLASS), share(CLASS))", text, x.Metric, strings.Join(metricList(), ", "))
	}
	return x, nil
}

// Measure is the value the expectation compares, from a run's metrics
// and its normal clients' outcome counts.
func (x Expectation) Measure(metrics map[string]float64, outcomes map[string]int64) float64 {
	switch x.Metric {
	case "count":
		return float64(outcomes[x.Class])
	case "share":
		if metrics["sessions"] == 0 {
			return 0
		}
		return float64(outcomes[x.Class]) / metrics["sessions"]
	}
	return metrics[x.Metric]
}

// Holds reports whether the measured value v meets the expectation.
func (x Expectation) Holds(v float64) bool {
	switch x.Op {
	case "==":
		return v == x.Value
	case "!=":
		return v != x.Value
	case "<":
		return v < x.Value
	case "<=":
		return v <= x.Value
	case ">":
		return v > x.Value
	}
	return v >= x.Value
}

// Applies reports whether the assertion is about cell c.
func (a Assertion) Applies(s *Scenario, c Cell) bool {
	for _, w := range a.Where {
		v, _ := c.Value(s, w.Key)
		if !slices.Contains(w.Values, v) {
			return false
		}
	}
	return true
}

// String is the assertion's where clause as text ("every cell" without
// one).
func (a Assertion) String() string {
	if len(a.Where) == 0 {
		return "every cell"
	}
	parts := make([]string, len(a.Where))
	for i, w := range a.Where {
		parts[i] = w.Key + "=" + strings.Join(w.Values, "|")
	}
	return strings.Join(parts, " ")
}
