package scenarios

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/route"
)

// FuzzParse: any input either fails with an *Error naming the file, or
// parses into a scenario whose cells all plan and whose daemon
// configuration the daemon reads; Parse never panics.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	builtIn, err := fs.Glob(library, "*.yaml")
	require.NoError(f, err)
	for _, file := range builtIn {
		data, err := library.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, tc := range badScenarios {
		f.Add([]byte(tc.text))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("f.yaml", data)
		if err != nil {
			require.Nil(t, s)
			var e *Error
			require.True(t, errors.As(err, &e), "%T: %v", err, err)
			require.Equal(t, "f.yaml", e.File)
			require.True(t, strings.HasPrefix(err.Error(), "f.yaml:"), "%v", err)
			require.GreaterOrEqual(t, e.Line, 0)
			return
		}
		require.Equal(t, "f.yaml", s.File)
		require.Equal(t, data, s.Text)
		require.NotEmpty(t, s.Name)
		require.NotEmpty(t, s.Workers)
		require.NotEmpty(t, s.Load)
		require.GreaterOrEqual(t, s.Repetitions, 1)
		// The runner's port is where the workers listen and the load goes
		// (a find of this fuzzer: "{host}{port}" went to port 808).
		for _, g := range s.Workers {
			for _, r := range g.Routes {
				u, err := route.Parse(Expand(r, "h", 9999))
				require.NoError(t, err)
				require.Equal(t, 9999, u.Port, r)
			}
		}
		for _, l := range s.Load {
			tg, err := loadgen.ParseTarget(Expand(l.Target, "127.0.0.1", 9999))
			require.NoError(t, err)
			addr := tg.Addr
			if l.Connect != "" {
				addr = Expand(l.Connect, "127.0.0.1", 9999)
			}
			require.Equal(t, "127.0.0.1:9999", addr, l.Target)
		}
		cells := s.Cells()
		require.NotEmpty(t, cells)
		require.LessOrEqual(t, len(cells), maxCells)
		// Planning every cell of a big sweep is slow; the first and last
		// do for the fuzzer (Parse planned them all).
		for _, c := range []Cell{cells[0], cells[len(cells)-1]} {
			require.Len(t, c.Values, len(s.Axes))
			require.NotEmpty(t, c.Label())
			pl, err := s.Plan(c)
			require.NoError(t, err)
			_, err = config.Parse("cell.yaml", pl.ConfigYAML("s.sock", []string{"127.0.0.1"}))
			require.NoError(t, err)
			for _, a := range s.Assert {
				a.Applies(s, c)
			}
		}
	})
}

// FuzzParseTolerance: any text either fails with a one-line error naming
// the valid forms, or gives a tolerance whose limit is finite and no
// looser than the baseline (Ratio ≥ 1, Abs ≥ 0) and whose canonical text
// parses back to the same tolerance.
func FuzzParseTolerance(f *testing.F) {
	for _, s := range []string{"exact", "off", "+0.05", "x2", "x2+20", "x1.5+2", " x3 + 50 ", "x0.5", "+-1", "x2+", "+inf", "xNaN", "1e308", "x1e308+1e308", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tol, err := ParseTolerance(text)
		if err != nil {
			require.NotContains(t, err.Error(), "\n")
			return
		}
		if tol.Off || tol.Exact {
			return
		}
		require.False(t, math.IsNaN(tol.Ratio) || math.IsInf(tol.Ratio, 0) || tol.Ratio < 1, "ratio %v from %q", tol.Ratio, text)
		require.False(t, math.IsNaN(tol.Abs) || math.IsInf(tol.Abs, 0) || tol.Abs < 0, "abs %v from %q", tol.Abs, text)
		again, err := ParseTolerance(tol.Text)
		require.NoError(t, err, "canonical %q of %q", tol.Text, text)
		require.Equal(t, tol, again)
	})
}
