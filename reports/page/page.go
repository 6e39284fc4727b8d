// Package page renders a sweep (reports.Sweep) as one self-contained HTML
// file: the verdict first, then the sweep matrix, each cell's detail and
// the environment. Everything it needs is inside the file — styles,
// charts as inline SVG, a few lines of script to sort the table — so it
// opens offline, can be mailed on, and prints.
package page

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/reports/chart"
	"github.com/portshare/portshare/scenarios/results"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed style.css
	styleCSS string
	//go:embed page.js
	pageJS string
)

var tmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"percent": reports.Percent,
	"millis":  reports.Millis,
	"num":     reports.Number,
	"join":    strings.Join,
	"stamp":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(pageHTML))

// Write renders the sweep's report to w. It fails only if w does; a sweep
// with cells not yet run, runs that could not start or a scenario this
// version no longer reads still renders, saying so.
func Write(w io.Writer, s *reports.Sweep) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, build(s)); err != nil {
		return fmt.Errorf("report: %v", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

type view struct {
	M         *results.Manifest
	CSS       template.CSS
	JS        template.JS
	Runs      int
	Verdict   verdictView
	Heatmaps  []heatGroup
	Axes      []string
	Classes   []string
	Rows      []row
	Cells     []cellView
	Sysctls   [][2]string
	ScenarioE string
}

type verdictView struct {
	Recommended *row
	Reference   *row
	Judged      int // cells with a run that started: what LeakFree and Clean are of
	LeakFree    []string
	Clean       []string
	Reasons     []string // Verdict.Reasons, which say where repetitions disagree
	Status      string   // good, partial, bad
}

type heatGroup struct {
	Title  string
	Charts []template.HTML
}

// row is one cell in the table and the verdict.
type row struct {
	Index      int
	Label      string
	Values     []string
	Runs       int
	Passed     int
	Sessions   float64
	ErrorRate  float64
	Outcomes   []int64 // by view.Classes
	Leaked     float64
	LeakedMax  float64
	P50        float64
	P99        float64
	P999       float64
	Throughput float64
	QueueFull  float64 // the daemon's side: ledger and kernel counts
	Evictions  float64
	Overflows  float64
	ByRep      map[string]string // metric → its value in each repetition, for tooltips
	Ledger     string
	FD         string
	State      string // clean, leak-free, leaks, failed, not run
	Mixed      bool
	Brief      string
	Failures   string
	Settings   string // what the cell's axis values set, presets spelled out
}

type cellView struct {
	row
	Checks   []reports.CheckResult
	Findings []string
	Runs     []runView
}

type runView struct {
	Repetition int
	Open       bool
	Error      string
	Charts     []template.HTML
	Always     []string
	Kernel     [][2]string
	Ledgers    []results.Ledger
	FDs        results.FDCheck
	Clients    []clientFault
	Started    time.Time
	Pass       bool
}

type clientFault struct {
	Load     int
	Spec     string
	Sessions int64
	Outcomes string
}

func build(s *reports.Sweep) view {
	v := view{M: s.Manifest, CSS: template.CSS(styleCSS), JS: template.JS(pageJS), Runs: len(s.Runs)}
	if s.ScenarioErr != nil {
		v.ScenarioE = s.ScenarioErr.Error()
	}
	for _, a := range s.Manifest.Axes {
		v.Axes = append(v.Axes, a.Key)
	}
	classes := map[string]bool{}
	for _, r := range s.Runs {
		for k, n := range r.Outcomes {
			if n > 0 || k == "ok" {
				classes[k] = true
			}
		}
	}
	v.Classes = okFirst(slices.Collect(maps.Keys(classes)))
	rows := map[*reports.Cell]*row{}
	for _, c := range s.Cells {
		r := newRow(s.Manifest, c, v.Classes)
		rows[c] = &r
		v.Rows = append(v.Rows, r)
		if len(c.Runs) > 0 {
			v.Cells = append(v.Cells, cellDetail(c, r))
		}
	}
	vd := s.Verdict()
	v.Verdict = verdictView{Judged: len(vd.Ran), Reasons: vd.Reasons, LeakFree: cellLabels(vd.LeakFree), Clean: cellLabels(vd.Clean)}
	if vd.Recommended != nil {
		v.Verdict.Recommended = rows[vd.Recommended]
	}
	if vd.Reference != nil {
		v.Verdict.Reference = rows[vd.Reference]
	}
	switch {
	case len(vd.Clean) > 0:
		v.Verdict.Status = "good"
	case len(vd.LeakFree) > 0:
		v.Verdict.Status = "partial"
	default:
		v.Verdict.Status = "bad"
	}
	v.Heatmaps = heatmaps(s, rows)
	for k, val := range s.Manifest.Sysctls {
		v.Sysctls = append(v.Sysctls, [2]string{k, val})
	}
	slices.SortFunc(v.Sysctls, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return v
}

// okFirst sorts outcome classes as every table and legend shows them: ok,
// then the others by name.
func okFirst(classes []string) []string {
	notOK := func(class string) int {
		if class == "ok" {
			return 0
		}
		return 1
	}
	slices.SortFunc(classes, func(a, b string) int { return cmp.Or(cmp.Compare(notOK(a), notOK(b)), strings.Compare(a, b)) })
	return classes
}

func cellLabels(cells []*reports.Cell) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c.Label
	}
	return out
}

func newRow(m *results.Manifest, c *reports.Cell, classes []string) row {
	r := row{Index: c.Index, Label: c.Label, Runs: len(c.Runs), Passed: c.Passed(), Mixed: c.Mixed(), Brief: c.Brief(), Failures: c.Failures(),
		Settings: settings(m, c)}
	for _, val := range c.Values {
		r.Values = append(r.Values, val.Value)
	}
	st := map[string]reports.Stat{}
	for _, m := range []string{"sessions", "error_rate", "leaked_handles", "p50_ms", "p99_ms", "p999_ms", "throughput", "queue_full", "evictions", "listen_overflows"} {
		st[m] = c.Metric(m)
	}
	r.Sessions = st["sessions"].Median
	r.ErrorRate = st["error_rate"].Median
	leaked := st["leaked_handles"]
	r.Leaked, r.LeakedMax = leaked.Median, leaked.Max
	r.P50, r.P99, r.P999 = st["p50_ms"].Median, st["p99_ms"].Median, st["p999_ms"].Median
	r.Throughput = st["throughput"].Median
	r.QueueFull = st["queue_full"].Median
	r.Evictions = st["evictions"].Median
	r.Overflows = st["listen_overflows"].Median
	r.ByRep = map[string]string{}
	for m, ms := range st {
		if m != "sessions" && ms.N() > 1 {
			vals := make([]string, ms.N())
			for i, v := range ms.Values {
				vals[i] = reports.Number(v)
			}
			r.ByRep[m] = "by repetition: " + strings.Join(vals, ", ")
		}
	}
	out := c.Outcomes()
	for _, k := range classes {
		r.Outcomes = append(r.Outcomes, out[k])
	}
	r.Ledger = check(c, "ledger_violations")
	r.FD = check(c, "fd_violations")
	switch {
	case len(c.Runs) == 0:
		r.State = "not run"
	case c.Clean():
		r.State = "clean"
	case c.LeakFree():
		r.State = "leak-free"
	case leaked.Max > 0:
		r.State = "leaks"
	default:
		r.State = "failed"
	}
	return r
}

// settings spells out a cell's axis values: "dispatch_failure_policy
// reclaim; remedy remedy-and-3min = listen_backlog 100, …".
func settings(m *results.Manifest, c *reports.Cell) string {
	var parts []string
	for i, v := range c.Values {
		text := v.Key + " " + v.Value
		if i < len(m.Axes) {
			if ps, ok := m.Axes[i].Presets[v.Value]; ok {
				kv := make([]string, len(ps))
				for j, p := range ps {
					kv[j] = p.Key + " " + p.Value
				}
				text += " = " + strings.Join(kv, ", ")
			}
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, "; ")
}

// check says how many runs held an invariant: "ok", "1 of 2 failed".
func check(c *reports.Cell, metric string) string {
	st := c.Metric(metric)
	if st.N() == 0 {
		return "–"
	}
	bad := 0
	for _, x := range st.Values {
		if x > 0 {
			bad++
		}
	}
	if bad == 0 {
		return "ok"
	}
	return fmt.Sprintf("%d of %d failed", bad, st.N())
}

func cellDetail(c *reports.Cell, r row) cellView {
	cv := cellView{row: r, Checks: c.Checks(), Findings: c.Findings()}
	for i, run := range c.Runs {
		rv := runView{Repetition: run.Repetition, Open: i == 0, Error: run.Error, Ledgers: run.Ledgers, FDs: run.FDs, Started: run.Started, Pass: run.Pass}
		if run.Error == "" {
			end := span(run)
			ws, ls := windows(run), leaks(run)
			bs := bands(ws, ls, end)
			rv.Charts = []template.HTML{
				latencyChart(run, end, bs).SVG(),
				rateChart(run, end, bs).SVG(),
				daemonChart(run, end, bs).SVG(),
			}
			if tl := timeline(ws, ls, end); len(tl.Rows) > 0 {
				rv.Charts = append(rv.Charts, tl.SVG())
			}
			rv.Charts = append(rv.Charts, spectrumChart(run).SVG(), phasesChart(run).SVG())
			rv.Always = always(ws)
			rv.Kernel = kernel(run)
			for li, l := range run.Load {
				for _, k := range slices.Sorted(maps.Keys(l.ClientFaults)) {
					f := l.ClientFaults[k]
					rv.Clients = append(rv.Clients, clientFault{Load: li + 1, Spec: k, Sessions: f.Sessions, Outcomes: outcomes(f.Outcomes)})
				}
			}
		}
		cv.Runs = append(cv.Runs, rv)
	}
	return cv
}

// kernel is the daemon namespace's listen-queue counters over the run.
func kernel(r *results.Run) [][2]string {
	var out [][2]string
	for _, k := range loadgen.KernelCounters {
		if n, ok := r.TCPExt[k]; ok {
			out = append(out, [2]string{k, fmt.Sprint(n)})
		}
	}
	return out
}

func outcomes(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// heatmaps draws, for every pair of axes (or the one axis), leaked
// handles, error rate and p99 per cell. With more than two axes each
// square shows the worst over the other axes' values, so a square marked
// safe is safe whatever they are.
func heatmaps(s *reports.Sweep, rows map[*reports.Cell]*row) []heatGroup {
	axes := s.Manifest.Axes
	if len(axes) == 0 {
		return nil
	}
	type pair struct{ x, y int } // y = -1: one row
	var pairs []pair
	if len(axes) == 1 {
		pairs = []pair{{0, -1}}
	}
	for i := 0; i < len(axes); i++ {
		for j := i + 1; j < len(axes); j++ {
			pairs = append(pairs, pair{x: j, y: i})
		}
	}
	metrics := []struct {
		title string
		value func(*row) float64
		text  func(float64) string
	}{
		{"Leaked handles (worst repetition)", func(r *row) float64 { return r.LeakedMax }, reports.Number},
		{"Error rate (median)", func(r *row) float64 { return r.ErrorRate }, reports.Percent},
		{"p99 latency (median)", func(r *row) float64 { return r.P99 }, reports.Millis},
	}
	var out []heatGroup
	for _, p := range pairs {
		g := heatGroup{Title: axes[p.x].Key}
		rowVals := []string{""}
		if p.y >= 0 {
			g.Title = axes[p.y].Key + " (rows) × " + axes[p.x].Key + " (columns)"
			rowVals = axes[p.y].Values
		}
		if len(axes) > 2 {
			g.Title += " (each square: the worst over the other axes)"
		}
		for _, m := range metrics {
			// Wide enough for the title and the axis name over a few
			// narrow columns ("1", "4"); a wide grid sizes itself.
			h := chart.Heatmap{Title: m.title, XLabel: axes[p.x].Key, Columns: axes[p.x].Values,
				Width: min(640, max(340, 120+100*len(axes[p.x].Values)))}
			if p.y >= 0 {
				h.Rows = axes[p.y].Values
			} else {
				h.Rows = []string{""} // one axis: the title says what the row is
			}
			for _, yv := range rowVals {
				var line []chart.HeatCell
				for _, xv := range axes[p.x].Values {
					worst, any, safe := math.Inf(-1), false, true
					var names []string
					for _, c := range s.Cells {
						if len(c.Runs) == 0 || c.Values[p.x].Value != xv || (p.y >= 0 && c.Values[p.y].Value != yv) {
							continue
						}
						r := rows[c]
						any = true
						worst = math.Max(worst, m.value(r))
						safe = safe && r.State == "clean"
						names = append(names, r.Label)
					}
					if !any {
						line = append(line, chart.HeatCell{Empty: true, Text: "not run"})
						continue
					}
					line = append(line, chart.HeatCell{Value: worst, Text: m.text(worst), Safe: safe,
						Title: strings.Join(names, "; ") + ": " + m.text(worst)})
				}
				h.Cells = append(h.Cells, line)
			}
			g.Charts = append(g.Charts, h.SVG())
		}
		out = append(out, g)
	}
	return out
}
