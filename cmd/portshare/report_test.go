package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// copyResults copies a results directory (its files, not logs/) so a
// test can write its report beside them.
func copyResults(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, e.Name()), b, 0o644))
	}
	return out
}

func TestReportBesideTheResults(t *testing.T) {
	dir := copyResults(t, "../../reports/testdata/smsvchost-defaults")
	code, stdout, stderr := cli("report", dir)
	require.Equal(t, 0, code, stderr)
	path := filepath.Join(dir, ReportFile)
	assert.Regexp(t, `^report: `+regexp.QuoteMeta(path)+` \(\d+ KiB\)\n$`, stdout)
	page, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(page), "<!DOCTYPE html>"))
	assert.Contains(t, string(page), "remedy=remedy-and-3min")
	left, err := filepath.Glob(filepath.Join(dir, ".report.html.*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file is left")
}

func TestReportToAFileAndToStdout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.html")
	code, _, stderr := cli("report", "../../reports/testdata/smsvchost-defaults", "-o", out)
	require.Equal(t, 0, code, stderr)
	file, err := os.ReadFile(out)
	require.NoError(t, err)

	code, stdout, stderr := cli("report", "../../reports/testdata/smsvchost-defaults", "-o", "-")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(stdout, "<!DOCTYPE html>"))
	// The same page, byte for byte: a report depends on the results alone.
	assert.Equal(t, string(file), stdout)
}

func TestReportUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"report"}, "takes one RESULTS_DIR"},
		{[]string{"report", "a", "b"}, "takes one RESULTS_DIR"},
		{[]string{"report", t.TempDir()}, "no manifest: is this a directory portshare tune wrote?"},
		{[]string{"report", "../../reports/testdata/smsvchost-defaults", "-o", filepath.Join(t.TempDir(), "no", "such", "dir", "r.html")}, "cannot write the report"},
	} {
		code, _, stderr := cli(tc.args...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Contains(t, stderr, tc.want)
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	}
}
