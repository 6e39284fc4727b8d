package scenarios

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseExpectation(t *testing.T) {
	for text, want := range map[string]Expectation{
		"p99_ms < 500":                   {Metric: "p99_ms", Op: "<", Value: 500},
		"  leaked_handles==0 ":           {Metric: "leaked_handles", Op: "==", Value: 0},
		"error_rate <= 0.01":             {Metric: "error_rate", Op: "<=", Value: 0.01},
		"throughput >= 1e3":              {Metric: "throughput", Op: ">=", Value: 1000},
		"ok > -1":                        {Metric: "ok", Op: ">", Value: -1},
		"findings != 0":                  {Metric: "findings", Op: "!=", Value: 0},
		"share(fault:ServerTooBusy)<.05": {Metric: "share", Class: "fault:ServerTooBusy", Op: "<", Value: 0.05},
		"count( http:503 ) == 2":         {Metric: "count", Class: "http:503", Op: "==", Value: 2},
	} {
		x, err := ParseExpectation(text)
		require.NoError(t, err, text)
		want.Text = strings.Trim(text, " ")
		assert.Equal(t, want, x, text)
	}
	// Every metric the runner computes can be named.
	for _, m := range MetricNames {
		_, err := ParseExpectation(m.Name + " >= 0")
		require.NoError(t, err, m.Name)
		assert.NotEmpty(t, m.Help, m.Name)
	}
}

func TestParseExpectationBad(t *testing.T) {
	for text, want := range map[string]string{
		"":                       "want METRIC OP NUMBER",
		"p99_ms":                 "want METRIC OP NUMBER",
		"p99_ms < 5 ms":          "want METRIC OP NUMBER",
		"p99_ms => 5":            "want METRIC OP NUMBER",
		"P99_ms < 5":             "want METRIC OP NUMBER",
		"p99_ms = 5":             "want METRIC OP NUMBER",
		"p99_ms < five":          `"five" is not a number`,
		"p99_ms < NaN":           `"NaN" is not a number`,
		"p99_ms < inf":           `"inf" is not a number`,
		"p99_ms < 1e999":         `"1e999" is not a number`,
		"p98_ms < 5":             `unknown metric "p98_ms" (known: sessions, ok,`,
		"count < 5":              "count takes an outcome class, such as count(reset)",
		"share() < 5":            "want METRIC OP NUMBER",
		"ok(reset) > 1":          "only count(CLASS) and share(CLASS) take an argument",
		"share(a b) < 1":         "want METRIC OP NUMBER",
		"count(reset) < 1 extra": "want METRIC OP NUMBER",
	} {
		_, err := ParseExpectation(text)
		require.Error(t, err, text)
		assert.Contains(t, err.Error(), want, text)
	}
}

func TestMeasure(t *testing.T) {
	metrics := map[string]float64{"sessions": 200, "p99_ms": 12.5}
	outcomes := map[string]int64{"ok": 190, "reset": 10}
	measure := func(text string, m map[string]float64, o map[string]int64) float64 {
		x, err := ParseExpectation(text)
		require.NoError(t, err)
		return x.Measure(m, o)
	}
	assert.Equal(t, 12.5, measure("p99_ms < 1", metrics, outcomes))
	assert.Equal(t, 0.0, measure("max_ms < 1", metrics, outcomes), "a metric not measured is 0")
	assert.Equal(t, 10.0, measure("count(reset) < 1", metrics, outcomes))
	assert.Equal(t, 0.0, measure("count(http:503) < 1", metrics, outcomes), "a class that did not occur")
	assert.Equal(t, 0.05, measure("share(reset) < 1", metrics, outcomes))
	assert.Equal(t, 0.0, measure("share(http:503) < 1", metrics, outcomes))
	// No sessions: a share is 0, not NaN (which would fail every test).
	assert.Equal(t, 0.0, measure("share(reset) < 1", map[string]float64{"sessions": 0}, outcomes))
	assert.Equal(t, 0.0, measure("share(reset) < 1", nil, nil))
}

func TestHolds(t *testing.T) {
	for _, tc := range []struct {
		op               string
		below, at, above bool // v = 4, 5, 6 against 5
	}{
		{"==", false, true, false},
		{"!=", true, false, true},
		{"<", true, false, false},
		{"<=", true, true, false},
		{">", false, false, true},
		{">=", false, true, true},
	} {
		x, err := ParseExpectation("p99_ms " + tc.op + " 5")
		require.NoError(t, err)
		assert.Equal(t, tc.below, x.Holds(4), "4 %s 5", tc.op)
		assert.Equal(t, tc.at, x.Holds(5), "5 %s 5", tc.op)
		assert.Equal(t, tc.above, x.Holds(6), "6 %s 5", tc.op)
		if tc.op != "!=" {
			assert.False(t, x.Holds(math.NaN()), "NaN %s 5", tc.op)
		}
	}
}

// applies lists the cells an assertion is about.
func applies(s *Scenario, a Assertion) []int {
	var out []int
	for _, c := range s.Cells() {
		if a.Applies(s, c) {
			out = append(out, c.Index)
		}
	}
	return out
}

func TestApplies(t *testing.T) {
	s := parseFile(t, "full.yaml")
	// Cells: policy (compat 0-3, reclaim 4-7) × limits (small, large) ×
	// workers.count (1, 3).
	assert.Equal(t, []int{4, 5, 6, 7}, applies(s, s.Assert[0]), "a swept key and both presets")
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, applies(s, s.Assert[1]), "a base key, written 1000ms, asked as 1s")
	assert.Equal(t, []int{3, 7}, applies(s, s.Assert[2]), "a preset's key and a swept one")
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, applies(s, s.Assert[3]), "the daemon's default")
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, applies(s, s.Assert[4]), "no where: every cell")

	for _, tc := range []struct {
		where []Where
		want  []int
	}{
		{[]Where{{"limits", []string{"large"}}}, []int{2, 3, 6, 7}},
		{[]Where{{"limits", []string{"small"}}, {"workers.count", []string{"1"}}}, []int{0, 4}},
		{[]Where{{"dispatch_failure_policy", []string{"compat", "reclaim"}}}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{[]Where{{"dispatch_failure_policy", []string{"safe"}}}, nil},
		{[]Where{{"grace_period", []string{"1s"}}}, nil},
		{[]Where{{"max_http_head", []string{"8192"}}}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{[]Where{{"workers.orders.count", []string{"3"}}}, []int{1, 3, 5, 7}},
		{[]Where{{"workers.web.max_inflight", []string{"8"}}}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{[]Where{{"workers.orders.max_inflight", []string{"4"}}}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{[]Where{{"no_such_key", []string{"x"}}}, nil},
	} {
		assert.Equal(t, tc.want, applies(s, Assertion{Where: tc.where}), "%v", tc.where)
	}

	// Keys of the workers and the loads the file leaves alone have the
	// workers' and the loads' values.
	p := parseFile(t, "plan.yaml")
	assert.Equal(t, []int{3}, applies(p, p.Assert[0]), "swept workers and load keys")
	assert.Equal(t, []int{0, 1, 2, 3}, applies(p, p.Assert[1]), "base and unset workers and load keys")
	// workers.max_inflight differs between the groups: a where on it
	// matches no cell, which the file may not say.
	data, err := os.ReadFile("testdata/plan.yaml")
	require.NoError(t, err)
	_, err = Parse("plan.yaml", append(data, "  - where: {grace_period: 0s, workers.max_inflight: 3}\n    expect: [\"ok > 0\"]\n"...))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plan.yaml:22: assert: where grace_period=0s workers.max_inflight=3 matches no cell of the sweep")
	assert.Equal(t, []int{0, 1, 2, 3}, applies(p, Assertion{Where: []Where{{"grace_period", []string{"0s"}}}}), "0 is 0s")
}

func TestAppliesAfterSet(t *testing.T) {
	s := parseFile(t, "full.yaml")
	require.NoError(t, s.Set("limits=small"))
	require.NoError(t, s.Set("workers.count=3"))
	// Cells: compat, reclaim.
	assert.Equal(t, []int{1}, applies(s, s.Assert[0]))
	assert.Nil(t, applies(s, s.Assert[2]), "no large preset left")
	assert.Equal(t, []int{0, 1}, applies(s, Assertion{Where: []Where{{"workers.orders.count", []string{"3"}}}}))
}
