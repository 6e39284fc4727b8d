package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/reports/compare/comparetest"
	"github.com/portshare/portshare/scenarios"
)

var compareFixture = comparetest.Fixture("../..")

// times multiplies by f, for Sweep.SetMetric.
func times(f float64) func(float64) float64 { return func(v float64) float64 { return v * f } }

func TestCompareIdenticalPasses(t *testing.T) {
	dir := t.TempDir()
	junit, md := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "summary.md")
	code, stdout, stderr := cli("compare", compareFixture, compareFixture, "--junit", junit, "--markdown", md)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Empty(t, stderr)
	assert.True(t, strings.HasPrefix(stdout, "portshare compare: ci-regression\n"), stdout)
	assert.True(t, strings.HasSuffix(stdout, "\nno regression in 4 cells\n"), stdout)
	assert.NotContains(t, stdout, "FAIL")

	data, err := os.ReadFile(junit)
	require.NoError(t, err)
	j := comparetest.ParseJUnit(t, data)
	assert.Equal(t, 73, j.Tests)
	assert.Zero(t, j.Failures)
	require.Len(t, j.Suites, 1)
	assert.Equal(t, "ci-regression", j.Suites[0].Name)

	data, err = os.ReadFile(md)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "### ✅ ci-regression: no regression in 4 cells\n"), string(data))
	assert.Contains(t, string(data), "<details>")

	written, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range written {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"junit.xml", "summary.md"}, names, "no temporary file is left")
}

func TestCompareRegressionFails(t *testing.T) {
	latest := comparetest.Doctored(t, compareFixture, 1, func(s *comparetest.Sweep) {
		for _, r := range s.Cell(t, comparetest.Compat3s) {
			r.Metrics["leaked_handles"] = 1
		}
	})
	junit := filepath.Join(t.TempDir(), "junit.xml")
	code, stdout, stderr := cli("compare", compareFixture, latest, "--junit", junit)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "FAIL "+comparetest.Compat3s+": leaked_handles: worst repetition 1, baseline's worst 0 (exact: must not be higher)\n")
	assert.Contains(t, stdout, "FAIL "+comparetest.Compat3s+": expect leaked_handles == 0: 1 of 1 repetitions failed leaked_handles == 0 (rep 1: 1)\n")
	assert.Regexp(t, `\n +leaked_handles +0 n=1 +1 n=1 +worst \+1 +worst ≤ 0 \(exact\) +REGRESSION\n`, stdout)
	assert.True(t, strings.HasSuffix(stdout, "\n1 regression, 1 failed expectation in 4 cells\n"), stdout)
	assert.Equal(t, "portshare: compare: 1 regression, 1 failed expectation in 4 cells (see above)\n", stderr)

	data, err := os.ReadFile(junit)
	require.NoError(t, err)
	j := comparetest.ParseJUnit(t, data)
	assert.Equal(t, 2, j.Failures)
	assert.Equal(t, []string{comparetest.Compat3s + ": leaked_handles", comparetest.Compat3s + ": expect leaked_handles == 0"}, j.Failed())
}

func TestCompareOtherRegressions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, s *comparetest.Sweep)
		want []string
	}{
		{"p99 three times", func(t *testing.T, s *comparetest.Sweep) { s.SetMetric(t, comparetest.Compat3s, "p99_ms", times(3)) },
			[]string{"FAIL " + comparetest.Compat3s + ": p99_ms: median 5.43s is above the limit 3.64s (baseline's worst 1.81s, tolerance x2+20)"}},
		{"error rate up 0.2", func(t *testing.T, s *comparetest.Sweep) {
			for _, r := range s.Cell(t, comparetest.Reclaim1s) {
				r.Metrics["error_rate"] += 0.2
			}
		}, []string{"FAIL " + comparetest.Reclaim1s + ": error_rate: median 0.245 is above the limit 0.0948",
			"FAIL " + comparetest.Reclaim1s + ": expect error_rate < 0.15: 1 of 1 repetitions failed error_rate < 0.15 (rep 1: 0.245)"}},
		{"a failed check", func(t *testing.T, s *comparetest.Sweep) {
			for _, r := range s.Cell(t, comparetest.Reclaim1s) {
				r.Outcomes["reset"] = 2
			}
		}, []string{"FAIL " + comparetest.Reclaim1s + ": expect count(reset) == 0: 1 of 1 repetitions failed count(reset) == 0 (rep 1: 2)"}},
		{"missing cell", func(t *testing.T, s *comparetest.Sweep) { s.Drop(comparetest.Reclaim1s) },
			[]string{"FAIL " + comparetest.Reclaim1s + ": cell ran: the baseline ran this cell; the new sweep did not", "1 cell not run in 4 cells"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			latest := comparetest.Doctored(t, compareFixture, 1, func(s *comparetest.Sweep) { tc.edit(t, s) })
			code, stdout, stderr := cli("compare", compareFixture, latest)
			require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, w := range tc.want {
				assert.Contains(t, stdout, w)
			}
			assert.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
		})
	}
}

func TestCompareImprovementPasses(t *testing.T) {
	latest := comparetest.Doctored(t, compareFixture, 1, func(s *comparetest.Sweep) {
		s.SetMetric(t, comparetest.Compat3s, "p99_ms", times(0.2))
		s.SetMetric(t, comparetest.Compat3s, "throughput", times(2))
	})
	code, stdout, stderr := cli("compare", compareFixture, latest)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Regexp(t, `\n +p99_ms +1\.81s n=1 +362ms n=1 +x0\.20 +≤ 3\.64s \(x2\+20\) +improved\n`, stdout)
	assert.True(t, strings.HasSuffix(stdout, "\nno regression in 4 cells (2 improvements)\n"), stdout)
}

// --tolerance overrides the defaults (and the scenario's section).
func TestCompareToleranceFlag(t *testing.T) {
	latest := comparetest.Doctored(t, compareFixture, 1, func(s *comparetest.Sweep) { s.SetMetric(t, comparetest.Compat3s, "p99_ms", times(3)) })
	code, stdout, _ := cli("compare", compareFixture, latest)
	require.Equal(t, 1, code, stdout)

	code, stdout, stderr := cli("compare", compareFixture, latest, "--tolerance", "p99_ms=off")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Regexp(t, `\n +p99_ms +1\.81s n=1 +5\.43s n=1 +\+3\.62s +off +not gated\n`, stdout)
	assert.Contains(t, stdout, "\ntolerances: p99_ms=off (flag); the defaults for the rest\n")

	code, stdout, stderr = cli("compare", compareFixture, latest, "--tolerance", "p99_ms=x3+10", "--tolerance", "max_pending=+0")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "≤ 5.44s (x3+10)")
	assert.Regexp(t, `\n +max_pending +30 n=1 +30 n=1 +~ +≤ 30 \(\+0\) +ok\n`, stdout)
}

// With - the document goes to stdout alone and the table to stderr.
func TestCompareToStdout(t *testing.T) {
	code, stdout, stderr := cli("compare", compareFixture, compareFixture, "--junit", "-")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(stdout, "<?xml"), stdout)
	comparetest.ParseJUnit(t, []byte(stdout))
	assert.Contains(t, stderr, "no regression in 4 cells")

	code, stdout, stderr = cli("compare", compareFixture, compareFixture, "--markdown", "-")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(stdout, "### ✅ ci-regression"), stdout)
	assert.Contains(t, stderr, "portshare compare: ci-regression")
}

func TestCompareUsageErrors(t *testing.T) {
	other := comparetest.Doctored(t, compareFixture, 1, func(s *comparetest.Sweep) {
		s.Manifest.Scenario = "other"
		for _, r := range s.Runs {
			r.Scenario = "other"
		}
	})
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{compareFixture}, "takes two results directories, BASELINE and NEW, got 1 argument(s)"},
		{[]string{compareFixture, compareFixture, compareFixture}, "got 3 argument(s)"},
		{[]string{empty, compareFixture}, "baseline: " + empty + ": no manifest: is this a directory portshare tune wrote?"},
		{[]string{compareFixture, empty}, "new: " + empty + ": no manifest: is this a directory portshare tune wrote?"},
		{[]string{compareFixture, other}, `is of "other": compare sweeps of one scenario`},
		{[]string{compareFixture, compareFixture, "--tolerance", "p99=x2"}, `--tolerance p99=x2: unknown metric "p99" (known: sessions, ok,`},
		{[]string{compareFixture, compareFixture, "--tolerance", "p99_ms=2x"}, "want " + scenarios.ToleranceForms},
		{[]string{compareFixture, compareFixture, "--tolerance", "p99_ms"}, "want METRIC=TOL"},
		{[]string{compareFixture, compareFixture, "--junit", "-", "--markdown", "-"}, "cannot both write to the standard output"},
		{[]string{compareFixture, compareFixture, "--junit", filepath.Join(empty, "no", "j.xml")}, "--junit " + filepath.Join(empty, "no", "j.xml") + ": no such directory: create " + filepath.Join(empty, "no") + " first"},
		{[]string{compareFixture, compareFixture, "--color"}, "unknown flag: --color"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := cli(append([]string{"compare"}, tc.args...)...)
			assert.Equal(t, 2, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			assert.Contains(t, stderr, tc.want)
			assert.True(t, strings.HasPrefix(stderr, "portshare: "), stderr)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %s", stderr)
		})
	}
}

// The help states the default tolerances; it must not drift from them.
func TestCompareHelpStatesTheDefaults(t *testing.T) {
	code, stdout, _ := cli("compare", "--help")
	require.Equal(t, 0, code)
	help := strings.Join(strings.Fields(stdout), " ")
	for metric, tol := range scenarios.DefaultTolerances() {
		assert.Contains(t, help, metric, "help names %s", metric)
		assert.Contains(t, help, tol.Text)
	}
	assert.Contains(t, help, "error_rate +0.05, p99_ms x2+20 and throughput x1.5")
}

// A sweep compared with itself exits 0, even when a repetition failed an
// expectation: that is a warning.
func TestCompareSelfPasses(t *testing.T) {
	s := comparetest.Read(t, compareFixture, 5)
	s.Cell(t, comparetest.Reclaim1s)[1].Outcomes["reset"] = 2 // fails count(reset) == 0
	sweep := s.Write(t)
	junit := filepath.Join(t.TempDir(), "junit.xml")
	code, stdout, stderr := cli("compare", sweep, sweep, "--junit", junit)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Empty(t, stderr)
	assert.NotContains(t, stdout, "FAIL")
	assert.Contains(t, stdout, "\nWARN "+comparetest.Reclaim1s+": expect count(reset) == 0: fails as in the baseline: 1/5 vs 1/5 (rep 2: 2)\n")
	assert.True(t, strings.HasSuffix(stdout, "\nno regression in 4 cells (1 expectation failing as in the baseline)\n"), stdout)
	data, err := os.ReadFile(junit)
	require.NoError(t, err)
	assert.Zero(t, comparetest.ParseJUnit(t, data).Failures)

	// More repetitions than the one-run baseline draw higher worst counts
	// where it leaks on purpose: not a regression.
	code, stdout, stderr = cli("compare", compareFixture, comparetest.Read(t, compareFixture, 5).Write(t))
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Regexp(t, `\n +leaked_handles +3 n=1 +3 ±33% n=5 +~ +≤ 6\.5 \(exact: x1\.5\+2 over a non-zero baseline\) +ok\n`, stdout)
}
