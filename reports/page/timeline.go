package page

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/reports/chart"
	"github.com/portshare/portshare/scenarios/results"
)

// window is a fault in effect over [From, To] seconds since the run's
// epoch (To is NaN while it never ended), or at one moment (Instant).
type window struct {
	Fault   string // the spec as written, seed removed
	Name    string
	Kind    faults.Kind
	Sources []string
	From    float64
	To      float64
	Instant bool
	Detail  string
}

// windows pairs a run's start and end events, the loads' client-fault
// events included, into windows; the same window in several workers
// (one stall spec in every process of a group) becomes one window naming
// them all.
func windows(r *results.Run) []window {
	events := slices.Clone(r.Events)
	for i, l := range r.Load {
		for _, e := range l.FaultEvents {
			e.Source = fmt.Sprintf("load %d", i+1)
			events = append(events, e)
		}
	}
	slices.SortStableFunc(events, func(a, b faults.Event) int { return a.Time.Compare(b.Time) })
	at := func(e faults.Event) float64 { return e.Time.Sub(r.Epoch).Seconds() }
	var out []window
	open := map[string]int{} // source+spec → index in out
	for _, e := range events {
		key := e.Source + "\x00" + e.Fault
		switch e.Phase {
		case faults.Start:
			open[key] = len(out)
			out = append(out, window{Fault: unseeded(e.Fault), Name: e.Name, Kind: e.Kind, Sources: []string{e.Source}, From: at(e), To: math.NaN(), Detail: e.Detail})
		case faults.End:
			if i, ok := open[key]; ok {
				out[i].To = at(e)
				if e.Detail != "" {
					out[i].Detail = strings.TrimSpace(out[i].Detail + "; " + e.Detail)
				}
				delete(open, key)
				continue
			}
			out = append(out, window{Fault: unseeded(e.Fault), Name: e.Name, Kind: e.Kind, Sources: []string{e.Source}, From: math.NaN(), To: at(e), Detail: e.Detail})
		default:
			out = append(out, window{Fault: unseeded(e.Fault), Name: e.Name, Kind: e.Kind, Sources: []string{e.Source}, From: at(e), To: at(e), Instant: true, Detail: e.Detail})
		}
	}
	return out
}

// merged joins windows of one spec whose times agree within 50 ms (the
// same window seen by several workers).
func merged(ws []window) []window {
	var out []window
	for _, w := range ws {
		i := slices.IndexFunc(out, func(o window) bool {
			return o.Fault == w.Fault && o.Instant == w.Instant && near(o.From, w.From) && near(o.To, w.To)
		})
		if i < 0 {
			out = append(out, w)
			continue
		}
		out[i].Sources = append(out[i].Sources, w.Sources...)
	}
	return out
}

func near(a, b float64) bool {
	return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) < 0.05
}

// timed reports whether a window is worth shading on a chart: one with a
// window of its own (at=, for=), a daemon or network fault, or a moment.
// Faults in effect for a process's whole life (slow-accept on every
// Accept, silent clients in every load) would shade everything and are
// listed in words instead.
// A spec this version no longer parses is listed in words.
func (w window) timed() bool {
	if w.Instant || w.Kind == faults.Daemon || w.Kind == faults.Network {
		return true
	}
	s, err := faults.Parse(w.Kind, w.Fault)
	return err == nil && (s.Has("at") || s.Has("for") || s.Has("after"))
}

// unseeded drops the seed= the runner adds to each process's spec, so
// one spec reads the same in every worker.
func unseeded(spec string) string {
	name, args, ok := strings.Cut(spec, ":")
	if !ok {
		return spec
	}
	kept := slices.DeleteFunc(strings.Split(args, ","), func(kv string) bool { return strings.HasPrefix(kv, "seed=") })
	if len(kept) == 0 {
		return name
	}
	return name + ":" + strings.Join(kept, ",")
}

// bands are a run's timed windows as chart bands, plus a marker at each
// of its leaks (leaked handles: where the sampled count of dispatch
// timeouts rose).
func bands(ws []window, leaks []float64, end float64) []chart.Band {
	var out []chart.Band
	for _, w := range merged(ws) {
		if !w.timed() {
			continue
		}
		from, to := w.From, w.To
		if math.IsNaN(from) {
			from = 0
		}
		if math.IsNaN(to) && !w.Instant {
			to = end
		}
		out = append(out, chart.Band{From: from, To: to, Label: w.Name})
	}
	for _, t := range leaks {
		out = append(out, chart.Band{From: t, To: t, Label: "leak", Color: "#b2182b"})
	}
	return out
}

// leaks are the sample times at which the run's count of leaked handles
// rose (one marker per rise, however many leaked in the 200 ms).
func leaks(r *results.Run) []float64 {
	var out []float64
	var prev uint64
	for _, s := range r.Samples {
		if s.Leaked > prev {
			out = append(out, s.T)
		}
		prev = s.Leaked
	}
	return out
}

// timeline is the fault event chart of a run's windows and leaks: a row
// per source, its timed windows as spans and its moments as instants,
// and a row of leaked handles. It has no rows if nothing happened at a
// time of its own.
func timeline(ws []window, leaks []float64, end float64) chart.Timeline {
	rows := map[string]*chart.TimelineRow{}
	var order []string
	row := func(src string) *chart.TimelineRow {
		if rows[src] == nil {
			rows[src] = &chart.TimelineRow{Label: src}
			order = append(order, src)
		}
		return rows[src]
	}
	for _, w := range ws {
		if !w.timed() { // listed in words instead: a bar across the whole run says nothing
			continue
		}
		for _, src := range w.Sources {
			text := w.Fault
			if w.Detail != "" {
				text += " (" + w.Detail + ")"
			}
			if w.Instant {
				row(src).Instants = append(row(src).Instants, chart.Instant{At: w.From, Text: text})
				continue
			}
			from := w.From
			if math.IsNaN(from) {
				from = 0
			}
			row(src).Spans = append(row(src).Spans, chart.Span{From: from, To: w.To, Text: text})
		}
	}
	slices.SortFunc(order, func(a, b string) int { return cmp.Compare(a, b) })
	t := chart.Timeline{Title: "Fault events", Width: chartW, XLabel: "seconds since the run's start", XMin: 0, XMax: end}
	for _, src := range order {
		t.Rows = append(t.Rows, *rows[src])
	}
	if len(leaks) > 0 {
		lr := chart.TimelineRow{Label: "daemon: leaked handles"}
		for _, at := range leaks {
			lr.Instants = append(lr.Instants, chart.Instant{At: at, Text: "leaked handle (dispatch timeout)", Color: "#b2182b"})
		}
		t.Rows = append(t.Rows, lr)
	}
	return t
}

// always lists, in words, the faults of a run's windows in effect for
// whole process lives.
func always(ws []window) []string {
	seen := map[string][]string{}
	var order []string
	for _, w := range ws {
		if w.timed() {
			continue
		}
		if seen[w.Fault] == nil {
			order = append(order, w.Fault)
		}
		seen[w.Fault] = append(seen[w.Fault], w.Sources...)
	}
	out := make([]string, len(order))
	for i, f := range order {
		srcs := slices.Compact(slices.Sorted(slices.Values(seen[f])))
		out[i] = f + " on " + strings.Join(srcs, ", ")
	}
	return out
}
