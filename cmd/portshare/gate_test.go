package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/reports/compare/comparetest"
	"github.com/portshare/portshare/sharer/testutil"
)

// ciBaseline is the regression gate's baseline, as .ci/run uses it.
const ciBaseline = "../../.ci/baseline/ci-regression"

// The gate of .ci/run, run against a daemon with a real regression:
// reclaim's hand-offs time out early, so reclaim starts leaking handles in
// the cell that must not leak. The whole ci-regression sweep runs against
// real processes; compare must exit 1 and blame the reclaim cells, and
// only them.
func TestRegressionGateFailsWhenReclaimLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the ci-regression sweep (about 25 s)")
	}
	t.Setenv(testutil.ChildEnv, "1")
	t.Setenv(breakReclaimEnv, "1")
	out := filepath.Join(t.TempDir(), "ci-regression")
	code, stdout, stderr := cli("tune", "ci-regression", "--out", out)
	require.Equal(t, 0, code, "tune without --check runs every cell whatever they show:\n%s\n%s", stdout, stderr)

	junit := filepath.Join(t.TempDir(), "junit.xml")
	code, stdout, stderr = cli("compare", ciBaseline, out, "--junit", junit)
	require.Equal(t, 1, code, "the gate must fail:\n%s\n%s", stdout, stderr)
	const reclaim3s = "dispatch_failure_policy=reclaim dispatch_timeout=3s"
	var fails []string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "FAIL ") {
			fails = append(fails, line)
		}
	}
	joined := strings.Join(fails, "\n")
	t.Logf("the gate says:\n%s\n%s", joined, stdout[strings.LastIndex(stdout[:len(stdout)-1], "\n")+1:])
	assert.Contains(t, joined, "FAIL "+reclaim3s+": leaked_handles: worst repetition")
	assert.Contains(t, joined, "FAIL "+reclaim3s+": expect leaked_handles == 0")
	for _, f := range fails {
		assert.Contains(t, f, "dispatch_failure_policy=reclaim", "only the broken policy's cells fail: %s", f)
	}

	b, err := os.ReadFile(junit)
	require.NoError(t, err)
	doc := comparetest.ParseJUnit(t, b)
	assert.Positive(t, doc.Failures)
}
