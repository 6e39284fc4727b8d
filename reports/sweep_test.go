package reports

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/scenarios/results"
)

// fixture is a real smsvchost-defaults sweep: repetition 1 of its ten
// cells, and repetition 2 of cell 0.
const fixture = "testdata/smsvchost-defaults"

func TestSummarize(t *testing.T) {
	st := Summarize([]float64{3, 1, 2})
	assert.Equal(t, 2.0, st.Median)
	assert.Equal(t, 1.0, st.Min)
	assert.Equal(t, 3.0, st.Max)
	assert.Equal(t, 3, st.N())
	assert.InDelta(t, 0.5, st.Spread(), 1e-9)
	assert.Equal(t, 2.5, Summarize([]float64{4, 1, 2, 3}).Median)
	empty := Summarize(nil)
	assert.True(t, math.IsNaN(empty.Median))
	assert.Equal(t, 0.0, empty.Spread())
	assert.Equal(t, 0.0, Summarize([]float64{7}).Spread())
}

func TestLoadGroupsRunsByCell(t *testing.T) {
	s, err := Load(fixture)
	require.NoError(t, err)
	require.NoError(t, s.ScenarioErr)
	require.Len(t, s.Cells, 10)
	assert.Len(t, s.Ran(), 10)
	assert.Len(t, s.Cells[0].Runs, 2)
	assert.Len(t, s.Cells[1].Runs, 1)
	assert.Equal(t, s.Cells[3], s.Cell(s.Cells[3].Label))
	assert.Nil(t, s.Cell("no such cell"))
	assert.Equal(t, 2, s.Cells[0].Metric("leaked_handles").N())
	assert.NotEmpty(t, s.Cells[0].Checks())
	for _, ch := range s.Cells[0].Checks() {
		assert.Equal(t, 2, ch.Runs, ch.Expect)
		assert.Len(t, ch.Values, 2)
	}
}

func TestLoadRefusesWhatIsNotResults(t *testing.T) {
	_, err := Load(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no manifest")
}

// The default scenario's answer: only the 3-minute dispatch timeout
// removes leaks, and only with the remedy's limits does nothing fail.
func TestVerdictOfTheDefaultScenario(t *testing.T) {
	s, err := Load(fixture)
	require.NoError(t, err)
	v := s.Verdict()
	require.Len(t, v.LeakFree, 4)
	for _, c := range v.LeakFree {
		assert.Regexp(t, `remedy=(dispatch-3min|remedy-and-3min)$`, c.Label)
	}
	require.Len(t, v.Clean, 2)
	require.NotNil(t, v.Recommended)
	// Both policies are clean with the remedy and a 3-minute timeout, at
	// the same cost and p99; reclaim's neighbours fail far fewer
	// sessions (compat's leak and evict), so it is the one to choose.
	assert.Equal(t, "dispatch_failure_policy=reclaim remedy=remedy-and-3min", v.Recommended.Label)
	require.NotNil(t, v.Reference)
	assert.Equal(t, 0, v.Reference.Index)
	assert.Empty(t, v.Mixed)
	text := strings.Join(v.Reasons, "\n")
	assert.Contains(t, text, "Whether handles leak depends on remedy alone")
	assert.Contains(t, text, "Recommended: "+v.Recommended.Label)
	assert.Contains(t, text, "the one whose neighbours (one setting changed) fail fewest sessions")
	assert.Contains(t, text, "The defaults (dispatch_failure_policy=compat remedy=smsvchost-3x")
	assert.Contains(t, text, "turned away by a full route queue")
}

func TestCostRanksLimitsAndTimeouts(t *testing.T) {
	s, err := Load(fixture)
	require.NoError(t, err)
	cost := map[string]float64{}
	for _, c := range s.Cells {
		cost[c.Label] = s.Cost(c)
	}
	l := func(policy, remedy string) string {
		return "dispatch_failure_policy=" + policy + " remedy=" + remedy
	}
	assert.Equal(t, 0.0, cost[l("compat", "smsvchost-3x")])
	assert.Equal(t, cost[l("compat", "field-remedy")], cost[l("reclaim", "field-remedy")], "a policy costs nothing")
	assert.Less(t, cost[l("compat", "smsvchost-3x")], cost[l("compat", "field-remedy")])
	assert.Less(t, cost[l("compat", "field-remedy")], cost[l("compat", "remedy-x10")])
	assert.Less(t, cost[l("compat", "dispatch-3min")], cost[l("compat", "remedy-and-3min")])
}

// copyFixture copies the fixture and lets edit change run files first.
func copyFixture(t *testing.T, edit func(name string, r *results.Run)) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(fixture)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(fixture, e.Name()))
		require.NoError(t, err)
		if e.Name() != results.ManifestFile && edit != nil {
			var r results.Run
			require.NoError(t, json.Unmarshal(b, &r))
			edit(e.Name(), &r)
			b, err = json.Marshal(&r)
			require.NoError(t, err)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644))
	}
	return dir
}

func TestVerdictSaysWhenRepetitionsDisagree(t *testing.T) {
	dir := copyFixture(t, func(name string, r *results.Run) {
		if name == "cell-009-rep-1.json" {
			r.Metrics["leaked_handles"] = 1
		}
		if name == "cell-000-rep-2.json" {
			r.Pass = false
		}
	})
	s, err := Load(dir)
	require.NoError(t, err)
	v := s.Verdict()
	require.Len(t, v.Mixed, 1)
	assert.Equal(t, 0, v.Mixed[0].Index)
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "Repetitions disagree in "+s.Cells[0].Label)
	// Cell 9 leaked once: only cell 4 (compat, remedy-and-3min) is clean.
	require.Len(t, v.Clean, 1)
	assert.Equal(t, 4, v.Recommended.Index)
}

func TestVerdictWithoutACleanCell(t *testing.T) {
	dir := copyFixture(t, func(name string, r *results.Run) { r.Metrics["leaked_handles"] = 3 })
	s, err := Load(dir)
	require.NoError(t, err)
	v := s.Verdict()
	assert.Empty(t, v.LeakFree)
	assert.Nil(t, v.Recommended)
	assert.Contains(t, v.Reasons[0], "No setting avoided leaked handles")
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "Nothing can be recommended")
}

func TestVerdictOfNothingRun(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(fixture, results.ManifestFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, results.ManifestFile), b, 0o644))
	s, err := Load(dir)
	require.NoError(t, err)
	v := s.Verdict()
	assert.Nil(t, v.Recommended)
	assert.Equal(t, []string{"No cell has run yet: there is nothing to judge."}, v.Reasons)
}

func TestFormats(t *testing.T) {
	assert.Equal(t, "0 %", Percent(0))
	assert.Equal(t, "0.8 %", Percent(0.008))
	assert.Equal(t, "< 0.1 %", Percent(0.0003))
	assert.Equal(t, "65 %", Percent(0.65))
	assert.Equal(t, "–", Percent(math.NaN()))
	assert.Equal(t, "850 µs", Millis(0.85))
	assert.Equal(t, "12.3 ms", Millis(12.34))
	assert.Equal(t, "2.06 s", Millis(2060))
	assert.Equal(t, "10 ms", Millis(10))
	assert.Equal(t, "2 s", Millis(2000))
	assert.Equal(t, "no handle", Count(0, "handle"))
	assert.Equal(t, "2.5 handles", Count(2.5, "handle"))
}

// A run that could not start measured nothing: its cell is neither
// leak-free nor leaking, and the verdict says it was not judged.
func TestVerdictLeavesOutRunsThatCouldNotStart(t *testing.T) {
	dir := copyFixture(t, func(name string, r *results.Run) {
		if strings.HasPrefix(name, "cell-009-") || strings.HasPrefix(name, "cell-000-") {
			r.Error = "daemon did not start: address in use"
			r.Metrics = nil
			r.Pass = false
		}
	})
	s, err := Load(dir)
	require.NoError(t, err)
	v := s.Verdict()
	require.Len(t, v.Unjudged, 2)
	assert.Len(t, v.Ran, 8)
	assert.Nil(t, v.Reference, "cell 0 measured nothing")
	require.Len(t, v.Clean, 1)
	assert.Equal(t, 4, v.Recommended.Index)
	assert.Contains(t, v.Reasons[0], "2 cell(s) could not start any run and are not judged")
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "3 of 8 settings avoided leaked handles")
	assert.Equal(t, 0, s.Cells[9].Metric("leaked_handles").N())
}

func TestMetricSkipsWhatARunDidNotMeasure(t *testing.T) {
	dir := copyFixture(t, func(name string, r *results.Run) {
		if name == "cell-000-rep-2.json" {
			delete(r.Metrics, "p99_ms")
		}
	})
	s, err := Load(dir)
	require.NoError(t, err)
	st := s.Cells[0].Metric("p99_ms")
	assert.Equal(t, 1, st.N(), "a missing metric is not a zero")
	assert.Equal(t, s.Cells[0].Runs[0].Metrics["p99_ms"], st.Median)

	// Nor is a leak count a run file lacks: such a cell is not leak-free.
	dir = copyFixture(t, func(name string, r *results.Run) {
		if name == "cell-009-rep-1.json" {
			delete(r.Metrics, "leaked_handles")
		}
	})
	s, err = Load(dir)
	require.NoError(t, err)
	assert.False(t, s.Cells[9].LeakFree())
	assert.False(t, s.Cells[9].Clean())
	assert.True(t, s.Cells[9].Served())
}
