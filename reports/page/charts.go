package page

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/reports/chart"
	"github.com/portshare/portshare/scenarios/results"
)

// chartW fits two charts side by side on a laptop screen.
const chartW = 600

// span is how long a run's charts run: from its epoch to the last
// sample, load second or event, at least 1 s.
func span(r *results.Run) float64 {
	end := 1.0
	for _, s := range r.Samples {
		end = math.Max(end, s.T)
	}
	for _, l := range r.Load {
		off := l.Started.Sub(r.Epoch).Seconds()
		end = math.Max(end, off+float64(len(l.Series)))
	}
	for _, e := range r.Events {
		end = math.Max(end, e.Time.Sub(r.Epoch).Seconds())
	}
	return math.Ceil(end*2) / 2
}

// loadName names load i of a run for legends: "load 1 (6/s)".
func loadName(i int, l *loadgen.Result) string {
	switch {
	case l.TargetRate > 0:
		return fmt.Sprintf("load %d (%s/s)", i+1, strconv.FormatFloat(l.TargetRate, 'f', -1, 64))
	case l.Concurrency > 0:
		return fmt.Sprintf("load %d (%d clients)", i+1, l.Concurrency)
	}
	return fmt.Sprintf("load %d", i+1)
}

func secs(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + "s" }

// latencyChart is session latency over time, per load: p50 and p99 of the
// sessions that ended in each second, from their intended start.
func latencyChart(r *results.Run, end float64, bs []chart.Band) chart.Line {
	c := chart.Line{Title: "Session latency (p50 solid, p99 dashed)", Width: chartW,
		XLabel: "seconds since the run's start", YLabel: "latency", YScale: chart.Log10, Bands: bs, YFormat: reports.MillisCompact, XFormat: secs}
	for i, l := range r.Load {
		off := l.Started.Sub(r.Epoch).Seconds()
		var x, p50, p99 []float64
		for _, s := range l.Series {
			x = append(x, off+float64(s.T)+0.5)
			if s.OK+s.Errors == 0 || s.P99us == 0 {
				p50, p99 = append(p50, math.NaN()), append(p99, math.NaN())
				continue
			}
			p50 = append(p50, float64(s.P50us)/1000)
			p99 = append(p99, float64(s.P99us)/1000)
		}
		c.Series = append(c.Series,
			chart.Series{Name: loadName(i, l) + " p50", X: x, Y: p50, Color: chart.Color(i)},
			chart.Series{Name: loadName(i, l) + " p99", X: x, Y: p99, Color: chart.Color(i), Dashed: true})
	}
	pad(&c, end)
	return c
}

// pad pins a time chart's x axis to the run's span with an invisible
// series, so every chart of a run lines up.
func pad(c *chart.Line, end float64) {
	c.Series = append(c.Series, chart.Series{X: []float64{0, end}, Y: []float64{math.NaN(), math.NaN()}})
}

// rateChart is sessions ending per second: ok, and every other class,
// over all loads, by whole second since the epoch.
func rateChart(r *results.Run, end float64, bs []chart.Band) chart.Line {
	bins := int(math.Ceil(end))
	perClass := map[string][]float64{}
	add := func(class string, t int, n int64) {
		if t < 0 || t >= bins || n == 0 {
			return
		}
		if perClass[class] == nil {
			perClass[class] = make([]float64, bins)
		}
		perClass[class][t] += float64(n)
	}
	for _, l := range r.Load {
		off := l.Started.Sub(r.Epoch).Seconds()
		for _, s := range l.Series {
			t := int(math.Floor(off + float64(s.T) + 0.5))
			add("ok", t, s.OK)
			for class, n := range s.Outcomes {
				add(class, t, n)
			}
		}
	}
	classes := okFirst(slices.Collect(maps.Keys(perClass)))
	x := make([]float64, bins)
	for i := range x {
		x[i] = float64(i)
	}
	c := chart.Line{Title: "Sessions ended per second, by outcome", Width: chartW, XLabel: "seconds since the run's start", YLabel: "sessions/s",
		YZero: true, Bands: bs, XFormat: secs}
	for i, class := range classes {
		c.Series = append(c.Series, chart.Series{Name: class, X: x, Y: perClass[class], Step: true, Color: classColor(class, i)})
	}
	pad(&c, end)
	return c
}

// okColor is ok's colour on every chart; no other class takes it.
var okColor = chart.Color(2)

// classColor gives ok its green and the other classes the palette's
// other colours, in order.
func classColor(class string, i int) string {
	if class == "ok" {
		return okColor
	}
	for j := i; ; j++ {
		if c := chart.Color(j); c != okColor {
			return c
		}
	}
}

// daemonChart is the daemon's sampled state: connections pending a
// hand-off, waiting in route queues, handed off and not acknowledged, and
// the kernel's accept queue.
func daemonChart(r *results.Run, end float64, bs []chart.Band) chart.Line {
	var x, pending, queued, inflight, listen, workers []float64
	for _, s := range r.Samples {
		if s.T < 0 { // the baseline before the load; the charts start at the epoch
			continue
		}
		x = append(x, s.T)
		listen = append(listen, float64(s.ListenQueue))
		if s.Unanswered { // only the kernel's queue is known: gaps in the rest
			nan := math.NaN()
			pending, queued, inflight, workers = append(pending, nan), append(queued, nan), append(inflight, nan), append(workers, nan)
			continue
		}
		pending = append(pending, float64(s.Pending))
		queued = append(queued, float64(s.Queued))
		inflight = append(inflight, float64(s.Inflight))
		workers = append(workers, float64(s.Workers))
	}
	c := chart.Line{Title: "Daemon state (sampled every 200 ms; gaps: it did not answer)", Width: chartW, XLabel: "seconds since the run's start", YLabel: "connections",
		YZero: true, Bands: bs, XFormat: secs, Series: []chart.Series{
			{Name: "pending (accepted, not handed off)", X: x, Y: pending},
			{Name: "queued (route queues)", X: x, Y: queued},
			{Name: "in flight (handed off, not acknowledged)", X: x, Y: inflight},
			{Name: "listen queue (kernel)", X: x, Y: listen, Dashed: true},
			{Name: "workers registered", X: x, Y: workers, Dashed: true, Step: true},
		}}
	pad(&c, end)
	return c
}

// spectrumPoints are the percentiles a spectrum is drawn at: 0, 10, 20 …
// 90, then nines: 99, 99.9 … as far as the count supports.
func spectrumPoints(count int64) []float64 {
	var ps []float64
	for p := 0.0; p < 90; p += 10 {
		ps = append(ps, p)
	}
	for k := 1.0; ; k += 0.25 {
		tail := math.Pow(10, -k) // the share of sessions above the percentile
		if float64(count)*tail < 1-1e-9 || k > 6 {
			break
		}
		ps = append(ps, 100*(1-tail))
	}
	return ps
}

// spectrumChart is the HDR percentile spectrum of session latency, per
// load, and of the client faults' sessions.
func spectrumChart(r *results.Run) chart.Line {
	c := chart.Line{Title: "Latency by percentile (HDR histogram)", Width: chartW, XLabel: "percentile", YLabel: "latency",
		XScale: chart.Percentile, YScale: chart.Log10, YFormat: reports.MillisCompact}
	add := func(name string, l *loadgen.Latency, color string, dashed bool) {
		if l == nil || l.Count == 0 {
			return
		}
		h, err := l.Histogram()
		if err != nil {
			return
		}
		var x, y []float64
		for _, p := range spectrumPoints(h.TotalCount()) {
			x = append(x, p)
			y = append(y, float64(h.ValueAtPercentile(p))/1000)
		}
		x = append(x, 100*(1-1/float64(h.TotalCount()+1)))
		y = append(y, float64(h.Max())/1000)
		c.Series = append(c.Series, chart.Series{Name: name, X: x, Y: y, Color: color, Dashed: dashed})
	}
	for i, l := range r.Load {
		add(loadName(i, l), l.Phases["session"], chart.Color(i), false)
		for _, k := range slices.Sorted(maps.Keys(l.ClientFaults)) {
			f := l.ClientFaults[k]
			add(fmt.Sprintf("load %d client fault %s", i+1, k), &f.Latency, chart.Color(i), true)
		}
	}
	return c
}

// phasesChart breaks a session's time down: connect, handshake (preamble
// to PreambleAck, or request to first byte), each message, the session
// from its intended start; p50, p99 and p99.9 of each, per load.
func phasesChart(r *results.Run) chart.Bars {
	b := chart.Bars{Title: "Timing breakdown (p50, p99, p99.9)", Width: chartW, XLabel: "latency", XScale: chart.Log10, Format: reports.MillisCompact}
	for i, l := range r.Load {
		for _, ph := range []string{"connect", "handshake", "message", "session"} {
			lat := l.Phases[ph]
			if lat == nil || lat.Count == 0 {
				continue
			}
			b.Bars = append(b.Bars, chart.Bar{Label: fmt.Sprintf("load %d %s", i+1, ph), Segments: []chart.Segment{
				{Name: "p50", Value: float64(lat.P50) / 1000, Color: chart.Color(0)},
				{Name: "p99", Value: float64(lat.P99) / 1000, Color: chart.Color(4)},
				{Name: "p99.9", Value: float64(lat.P999) / 1000, Color: chart.Color(5)},
			}})
		}
	}
	return b
}
