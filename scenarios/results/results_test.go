package results

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/portshare/portshare/scenarios"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sweep() (*Manifest, []*Run) {
	m := &Manifest{Format: ManifestFormat, Scenario: "s", Repetitions: 2, Started: time.Now().UTC()}
	for i, label := range []string{"policy=compat", "policy=reclaim"} {
		m.Cells = append(m.Cells, Cell{Index: i, Label: label, Values: []scenarios.Setting{{Key: "policy", Value: label[7:]}}})
	}
	var runs []*Run
	for _, c := range []int{1, 0} {
		for _, rep := range []int{2, 1} {
			runs = append(runs, &Run{Format: RunFormat, Scenario: "s", Cell: c, Repetition: rep, Label: m.Cells[c].Label,
				Metrics: map[string]float64{"leaked_handles": float64(c)}, Pass: c == 1})
		}
	}
	return m, runs
}

func write(t *testing.T, dir string, m *Manifest, runs []*Run) {
	require.NoError(t, WriteJSON(filepath.Join(dir, ManifestFile), m))
	for _, r := range runs {
		require.NoError(t, WriteJSON(filepath.Join(dir, RunFile(r.Cell, r.Repetition)), r))
	}
}

// Run files written on several machines (--cell) and copied into one
// directory read back as one sweep, in cell and repetition order.
func TestReadDirRoundTripSorted(t *testing.T) {
	dir := t.TempDir()
	m, runs := sweep()
	write(t, dir, m, runs)
	got, rs, err := ReadDir(dir)
	require.NoError(t, err)
	assert.Equal(t, m.Scenario, got.Scenario)
	require.Len(t, rs, 4)
	for i, want := range [][2]int{{0, 1}, {0, 2}, {1, 1}, {1, 2}} {
		assert.Equal(t, want, [2]int{rs[i].Cell, rs[i].Repetition})
	}
	assert.Equal(t, 1.0, rs[2].Metrics["leaked_handles"])
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	assert.Empty(t, left, "WriteJSON leaves no temporary file")
}

func TestReadDirRefusesWhatIsNotItsSweep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *Manifest, r *Run)
		want   string
	}{
		{"manifest format", func(m *Manifest, _ *Run) { m.Format = "other/9" }, `format "other/9"`},
		{"run format", func(_ *Manifest, r *Run) { r.Format = "other/9" }, `format "other/9"`},
		{"other scenario", func(_ *Manifest, r *Run) { r.Scenario = "t" }, `a run of scenario "t"`},
		{"cell out of range", func(_ *Manifest, r *Run) { r.Cell = 5 }, "not in the manifest's sweep"},
		{"other --set", func(_ *Manifest, r *Run) { r.Label = "policy=x" }, "other --set flags"},
		{"other sweep", func(_ *Manifest, r *Run) { r.Sweep = "0123456789abcdef" }, "a run of another sweep of s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m, runs := sweep()
			tc.change(m, runs[0])
			write(t, dir, m, runs)
			_, _, err := ReadDir(dir)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, _, err := ReadDir(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no manifest")
	assert.ErrorIs(t, err, fs.ErrNotExist, "the runner tells an empty directory by it")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{"), 0o644))
	_, _, err = ReadDir(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), ManifestFile)
}
