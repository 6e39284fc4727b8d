// Package comparetest writes doctored copies of a results directory for
// the tests of `portshare compare`: more repetitions of each run, with
// their times, rates and non-zero counts varied, metrics changed, cells
// dropped. It also reads the JUnit XML compare writes. Only tests import
// it.
package comparetest

import (
	"encoding/json"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
)

// Sweep is a results directory in memory, to change before Write.
type Sweep struct {
	Manifest *results.Manifest
	Runs     []*results.Run
}

// jittered are the metrics Read scales between the repetitions it makes:
// measures of time and rate, which real repetitions never repeat exactly.
var jittered = []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "throughput"}

// counted are the counts Read varies by one between the repetitions it
// makes, where they are not zero: a cell that leaks on purpose leaks a
// little more or less each time. Zero stays zero and non-zero never
// reaches zero, so expectations such as "leaked_handles == 0" and
// "evictions > 0" keep their outcome.
var counted = []string{"leaked_handles", "dispatch_timeout", "evictions", "dispatch_error"}

// Read loads the results directory src and repeats each of its first
// repetitions reps times. With more than one, repetition k has the time
// and rate metrics (jittered) scaled by 1 + (k%5 − 2)/100 and the non-zero
// counts (counted) moved by k%3 − 1 (0, +1, −1, …) but kept at 1 or more,
// so medians, spreads and worst repetitions are realistic but the
// verdicts of expectations do not change. It fails the test on a bad
// directory.
func Read(t testing.TB, src string, reps int) *Sweep {
	t.Helper()
	m, runs, err := results.ReadDir(src)
	require.NoError(t, err)
	s := &Sweep{Manifest: m}
	m.Repetitions = reps
	for _, r := range runs {
		if r.Repetition != 1 {
			continue
		}
		for k := 1; k <= reps; k++ {
			c := clone(t, r)
			c.Repetition = k
			if reps > 1 {
				f := 1 + float64(k%5-2)/100
				for _, name := range jittered {
					c.Metrics[name] *= f
				}
				for _, name := range counted {
					if v := c.Metrics[name]; v != 0 {
						c.Metrics[name] = max(1, v+float64(k%3-1))
					}
				}
			}
			s.Runs = append(s.Runs, c)
		}
	}
	return s
}

func clone(t testing.TB, r *results.Run) *results.Run {
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var c results.Run
	require.NoError(t, json.Unmarshal(b, &c))
	return &c
}

// Cell is the runs of the cell labelled label; it fails the test if there
// is none.
func (s *Sweep) Cell(t testing.TB, label string) []*results.Run {
	t.Helper()
	var out []*results.Run
	for _, r := range s.Runs {
		if r.Label == label {
			out = append(out, r)
		}
	}
	require.NotEmpty(t, out, "no runs of cell %q", label)
	return out
}

// SetMetric sets metric in every run of the cell labelled label to f of
// its value; it fails the test if there is no such cell.
func (s *Sweep) SetMetric(t testing.TB, label, metric string, f func(float64) float64) {
	t.Helper()
	for _, r := range s.Cell(t, label) {
		r.Metrics[metric] = f(r.Metrics[metric])
	}
}

// Drop removes the runs of the cell labelled label.
func (s *Sweep) Drop(label string) {
	var keep []*results.Run
	for _, r := range s.Runs {
		if r.Label != label {
			keep = append(keep, r)
		}
	}
	s.Runs = keep
}

// Write evaluates every run's expectations again from its metrics, as the
// runner does (so a doctored metric fails the checks on it), and writes
// the sweep to a new temporary directory of the test, which it returns.
func (s *Sweep) Write(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, results.WriteJSON(filepath.Join(dir, results.ManifestFile), s.Manifest))
	for _, r := range s.Runs {
		recheck(t, r)
		require.NoError(t, results.WriteJSON(filepath.Join(dir, results.RunFile(r.Cell, r.Repetition)), r))
	}
	return dir
}

// recheck evaluates a run's checks again from its metrics and outcomes,
// and its pass. A check whose text is not an expectation fails the test.
func recheck(t testing.TB, r *results.Run) {
	t.Helper()
	if r.Error != "" {
		r.Pass, r.Checks = false, nil
		return
	}
	r.Pass = len(r.Findings) == 0
	for i, c := range r.Checks {
		x, err := scenarios.ParseExpectation(c.Expect)
		require.NoError(t, err)
		v := x.Measure(r.Metrics, r.Outcomes)
		r.Checks[i].Value, r.Checks[i].Pass = v, x.Holds(v)
		r.Pass = r.Pass && r.Checks[i].Pass
	}
}

// Fixture is the path of the committed ci-regression results (4 cells ×
// 1 repetition) from a directory of the module: root is the path from
// there to the module's root ("." or "../..").
func Fixture(root string) string {
	return filepath.Join(strings.TrimSuffix(root, "/"), "reports", "compare", "testdata", "ci")
}

// The cells of the ci-regression fixture, by label.
const (
	Compat1s  = "dispatch_failure_policy=compat dispatch_timeout=1s"
	Compat3s  = "dispatch_failure_policy=compat dispatch_timeout=3s"
	Reclaim1s = "dispatch_failure_policy=reclaim dispatch_timeout=1s"
	Reclaim3s = "dispatch_failure_policy=reclaim dispatch_timeout=3s"
)

// Doctored writes a copy of the results directory src with reps
// repetitions per cell (Read), changed by edit unless it is nil, and
// returns the copy's directory (Write).
func Doctored(t testing.TB, src string, reps int, edit func(s *Sweep)) string {
	t.Helper()
	s := Read(t, src, reps)
	if edit != nil {
		edit(s)
	}
	return s.Write(t)
}

// JUnit is what the tests read of the JUnit XML compare writes.
type JUnit struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Skipped   *struct{} `xml:"skipped"`
			SystemOut string    `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ParseJUnit reads a JUnit document; it fails the test if it does not
// parse.
func ParseJUnit(t testing.TB, data []byte) JUnit {
	t.Helper()
	var j JUnit
	require.NoError(t, xml.Unmarshal(data, &j), string(data))
	return j
}

// Failed lists the failed test cases, as "classname: name".
func (j JUnit) Failed() []string {
	var out []string
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			if c.Failure != nil {
				out = append(out, c.Classname+": "+c.Name)
			}
		}
	}
	return out
}
