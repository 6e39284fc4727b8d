// Package chart draws the small SVG charts of the offline tuning report.
//
// Each chart renders to one self-contained <svg> fragment for inlining in an
// HTML page: no scripts, fonts, images or links, so a report stays readable
// offline, and presentation attributes keep it legible without a stylesheet
// and in print. Classes let a page stylesheet restyle it: chart (plus the
// kind: line, bars, heatmap, timeline), title, axis, axis-label, grid, band,
// band-label, series, legend, bar, value, cell, empty, safe, span, instant
// and nodata. Output is deterministic, so reports of the same data are
// byte-identical and diff cleanly.
//
// Our own rather than a library's because the report needs shaded x-ranges
// and log and percentile axes, which the served chart library lacks.
package chart

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Scale of an axis.
type Scale int

const (
	// Linear spaces values evenly, with ticks at 1, 2 or 5 × 10^k.
	Linear Scale = iota
	// Log10 spaces values by their logarithm, with ticks at decades. A
	// value ≤ 0 has no logarithm, so it is drawn at the bottom of the axis,
	// the smallest positive value shown.
	Log10
	// Percentile is for x only: percentiles 0..<100 spread as
	// -log10(1-p/100), so 90, 99, 99.9 … are equally far apart and an HDR
	// spectrum's tail gets room. A value ≥ 100 is drawn at the right edge.
	Percentile
)

const (
	defaultW, defaultH = 640, 220
	titleH             = 24
	keyH               = 16
	// charW estimates the mean glyph width of the charts' 10–11px text:
	// offline there are no font metrics, and an estimate is enough to size
	// label columns and clip labels.
	charW = 6.0
)

var okabeIto = [...]string{"#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}

// Color returns colour i of the Okabe–Ito palette, whose colours stay
// distinguishable with the common colour-vision deficiencies. i wraps around
// the eight colours; a negative i counts back from the end.
func Color(i int) string { return okabeIto[(i%len(okabeIto)+len(okabeIto))%len(okabeIto)] }

func pick[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

type svg struct{ strings.Builder }

func (s *svg) f(format string, a ...any) { fmt.Fprintf(&s.Builder, format, a...) }

// begin opens the root element. The <title> child is the accessible name, so
// a chart without a title still gets one from its kind.
func begin(kind string, w, h int, title string) *svg {
	s := &svg{}
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" class="chart %s" font-size="11" fill="#000">`, w, h, w, h, kind)
	s.f("<title>%s</title>", esc(pick(title != "", title, kind+" chart")))
	if title != "" {
		s.f(`<text class="title" x="4" y="16" font-size="13" font-weight="bold">%s</text>`, clip(title, (w-8)/7))
	}
	return s
}

func (s *svg) end() template.HTML { return template.HTML(s.String() + "</svg>") }

// width is a chart's width: w, or the default for 0 or less.
func width(w int) int { return cmp.Or(max(w, 0), defaultW) }

// plotTop is where the plot of a chart with rows (Bars, Timeline) starts:
// below the title if there is one.
func plotTop(title string) float64 { return pick(title != "", titleH+4.0, 8) }

// yLabel draws an axis label rotated up the left edge, centred on mid
// (a y coordinate) and clipped to length pixels.
func (s *svg) yLabel(label string, mid, length float64) {
	s.f(`<text class="axis-label" transform="rotate(-90)" x="%s" y="12" text-anchor="middle">%s</text>`, n(-mid), clip(label, int(length/charW)))
}

// noData is the frame every chart falls back to, so a report's layout does
// not shift when a run produced nothing to plot.
func noData(kind string, w, h int, title string) template.HTML {
	s := begin(kind, w, h, title)
	top := pick(title != "", titleH, 4)
	s.f(`<rect class="axis" x="0.5" y="%d.5" width="%d" height="%d" fill="none" stroke="#999"/>`, top, w-1, h-top-1)
	s.f(`<text class="nodata" x="%d" y="%d" text-anchor="middle" fill="#555">no data</text>`, w/2, (top+h)/2+4)
	return s.end()
}

// clean makes s valid XML character data on one line: invalid UTF-8 becomes
// U+FFFD (strings.Map does that) and control characters, which XML forbids,
// become spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == 0xFFFE || r == 0xFFFF {
			return -1
		}
		return pick(r < 0x20, ' ', r)
	}, s)
}

func esc(s string) string { return html.EscapeString(clean(s)) }

func runes(s string) int { return utf8.RuneCountInString(s) }

// truncRunes shortens s to at most m runes, the last an ellipsis.
func truncRunes(s string, m int) string {
	r := []rune(clean(s))
	if len(r) > m {
		r = append(r[:max(m-1, 0)], '…')[:max(m, 0)]
	}
	return string(r)
}

// clip escapes s, shortened to at most m runes; a shortened text carries the
// full one as a <title> child, its tooltip.
func clip(s string, m int) string {
	if runes(s) <= m {
		return esc(s)
	}
	return "<title>" + esc(s) + "</title>" + esc(truncRunes(s, m))
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// tenths rounds a coordinate to 0.1px, finer than screens or print show,
// which keeps the output small; non-finite values become 0 so that NaN and
// Inf never reach the SVG.
func tenths(v float64) int {
	if math.IsNaN(v) {
		return 0
	}
	return int(math.Round(max(-1e6, min(1e6, v)) * 10))
}

func tstr(t int) string { return strconv.FormatFloat(float64(t)/10, 'f', -1, 64) }

// n formats a coordinate.
func n(v float64) string { return tstr(tenths(v)) }

// compact is the default label format, short enough for narrow columns:
// 1k, 2.5M, 0.25.
func compact(v float64) string {
	switch a := math.Abs(v); {
	case !finite(v):
		return ""
	case a == 0:
		return "0"
	case a < 0.9995:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	unit := ""
	// 999.5 so that 999.7 becomes 1k, not 1000.
	for _, u := range []string{"k", "M", "G", "T"} {
		if math.Abs(v) >= 999.5 {
			v, unit = v/1000, u
		}
	}
	// Three significant digits without trailing zeros ('g' drops them),
	// and no exponent past the last unit.
	if math.Abs(v) >= 999.5 {
		return strconv.FormatFloat(v, 'f', 0, 64) + unit
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + unit
}

// axis maps data values to a fraction of the plot. Drawn units are the value
// itself (Linear), its log10 (Log10) or -log10(1-p/100) (Percentile).
type axis struct {
	scale  Scale
	lo, hi float64   // domain in drawn units, hi > lo
	ticks  []float64 // drawn units
	labels []string
}

func (a *axis) unit(v float64) float64 {
	switch {
	case a.scale == Log10 && v <= 0:
		return a.lo
	case a.scale == Log10:
		return math.Log10(v)
	case a.scale == Percentile && v >= 100:
		return a.hi
	case a.scale == Percentile:
		return pctUnit(v)
	}
	return v
}

// at places drawn unit u as a fraction in [0,1]: values out of range are
// pinned to the nearer end rather than drawn outside the plot.
func (a *axis) at(u float64) float64 { return max(0, min(1, (u-a.lo)/(a.hi-a.lo))) }

func (a *axis) pos(v float64) float64 { return a.at(a.unit(v)) }

func (a *axis) tick(u float64, label string) {
	a.ticks, a.labels = append(a.ticks, u), append(a.labels, label)
}

func pctUnit(p float64) float64 { return -math.Log10(1 - max(0, p)/100) }

// newAxis fits an axis to the finite values of vs. zero pulls a linear axis
// to include 0; exact keeps the data's range as the domain (the x axis of a
// time series) instead of widening it to the outer ticks.
func newAxis(s Scale, vs []float64, zero, exact bool, format func(float64) string) axis {
	custom := format != nil
	if !custom {
		format = compact
	}
	if s != Log10 && s != Percentile {
		s = Linear
	}
	a := axis{scale: s}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		if finite(v) && (s == Linear || s == Log10 && v > 0 || s == Percentile && v < 100) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	switch s {
	case Log10:
		if lo > hi {
			lo, hi = 1, 10
		}
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		a.hi += pick(a.hi == a.lo, 1.0, 0)
		// Few decades leave room for 2× and 5× ticks; many are thinned to
		// at most eight labels.
		step, fine := math.Ceil((a.hi-a.lo)/7), a.hi-a.lo <= 2
		for e := a.lo; e <= a.hi; e += step {
			a.tick(e, format(math.Pow10(int(e))))
			for _, m := range []float64{2, 5} {
				if fine && e < a.hi {
					a.tick(e+math.Log10(m), format(m*math.Pow10(int(e))))
				}
			}
		}
	case Percentile:
		a.lo, a.hi = 0, max(1, pctUnit(max(hi, 0)))
		for k := 0; float64(k) <= a.hi+1e-9 && k <= 15; k++ {
			// Labels from digits rather than floats show no rounding
			// noise: 0, 90, 99, 99.9, 99.99 …
			l := []string{"0", "90", "99"}[min(k, 2)]
			if k > 2 {
				l = "99." + strings.Repeat("9", k-2)
			}
			a.tick(float64(k), pick(custom, format(100-100/math.Pow10(k)), l))
		}
	default:
		if lo > hi {
			lo, hi = 0, 1
		}
		if zero {
			lo, hi = min(lo, 0), max(hi, 0)
		}
		if lo == hi {
			d := pick(lo == 0, 1, math.Abs(lo)/10)
			lo, hi = pick(zero, max(lo-d, 0), lo-d), hi+d
		}
		ts := niceTicks(lo, hi)
		a.lo, a.hi = pick(exact, lo, ts[0]), pick(exact, hi, ts[len(ts)-1])
		eps := (a.hi - a.lo) * 1e-9
		for _, t := range ts {
			if t >= a.lo-eps && t <= a.hi+eps {
				a.tick(t, format(t))
			}
		}
	}
	return a
}

// niceTicks returns four to eight ticks at a 1, 2 or 5 × 10^k step, the first
// at or below lo and the last at or above hi (lo < hi).
func niceTicks(lo, hi float64) []float64 {
	span := hi - lo
	if !finite(span) || span <= 0 {
		return []float64{lo, hi}
	}
	// A step of at least span/5 gives at most 7 intervals after rounding
	// the ends out; the next smaller candidate being below span/5 gives
	// more than 2.
	raw := span / 5
	e := int(math.Floor(math.Log10(raw)))
	m := 1.0
	for _, m = range []float64{1, 2, 5, 10} {
		if m*math.Pow10(e) >= raw*(1-1e-12) {
			break
		}
	}
	step := m * math.Pow10(e)
	k0, k1 := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	var ts []float64
	// Counting i rather than k keeps the loop finite where k is so large
	// that k+1 == k.
	for i := 0.0; i <= min(k1-k0, 20); i++ {
		// Dividing by a power of ten rather than multiplying by its
		// inexact inverse gives 0.3, not 0.30000000000000004.
		k := (k0 + i) * m
		ts = append(ts, pick(e >= 0, k*math.Pow10(e), k/math.Pow10(-e)))
	}
	return pick(len(ts) < 2, []float64{lo, hi}, ts)
}

// key is a legend entry.
type key struct {
	name, color string
	dashed      bool
}

// layoutKeys places keys left to right, wrapping at width, and returns each
// key's offset and the number of rows, which callers need before drawing to
// size the chart.
func layoutKeys(keys []key, width float64) (xy [][2]float64, rows int) {
	x, y := 0.0, 0.0
	for _, k := range keys {
		kw := 34 + float64(min(runes(k.name), 40))*charW
		if x > 0 && x+kw > width {
			x, y = 0, y+keyH
		}
		xy, x = append(xy, [2]float64{x, y}), x+kw
	}
	return xy, pick(len(keys) > 0, int(y/keyH)+1, 0)
}

// drawKeys draws a legend at x0,y0 (the first row's middle); line swatches
// show dashing for line charts, boxes suit bars.
func drawKeys(s *svg, keys []key, xy [][2]float64, x0, y0 float64, line bool) {
	s.f(`<g class="legend">`)
	for i, k := range keys {
		x, y := x0+xy[i][0], y0+xy[i][1]
		if line {
			s.f(`<path d="M%s %sh16" stroke="%s" stroke-width="2"%s/>`, n(x), n(y), esc(k.color), pick(k.dashed, ` stroke-dasharray="5 3"`, ""))
		} else {
			s.f(`<rect x="%s" y="%s" width="12" height="10" fill="%s"/>`, n(x+2), n(y-5), esc(k.color))
		}
		s.f(`<text x="%s" y="%s">%s</text>`, n(x+20), n(y+4), clip(k.name, 40))
	}
	s.f(`</g>`)
}

// frame draws a plot's grid, axis lines and x axis for the plot spanning
// left..left+pw and top..bot, and on the left labels either the y axis ya
// (Line) or rows of height rowH (Bars, Timeline), which get lines between.
func frame(s *svg, xa, ya *axis, rows []string, rowH, left, top, pw, bot float64, xlabel string) {
	var grid, marks strings.Builder
	move := func(b *strings.Builder, x, y float64, d string) { b.WriteString("M" + n(x) + " " + n(y) + d) }
	for _, t := range xa.ticks {
		move(&grid, left+xa.at(t)*pw, top, "V"+n(bot))
		move(&marks, left+xa.at(t)*pw, bot, "v4")
	}
	var ly []float64 // the labels' middles
	if ya != nil {
		rows = ya.labels
		for _, t := range ya.ticks {
			ly = append(ly, bot-ya.at(t)*(bot-top))
			move(&grid, left, ly[len(ly)-1], "h"+n(pw))
			move(&marks, left, ly[len(ly)-1], "h-4")
		}
	}
	for i := range rows {
		if ya == nil {
			ly = append(ly, top+(float64(i)+0.5)*rowH)
			if i > 0 {
				move(&grid, left, top+float64(i)*rowH, "h"+n(pw))
			}
		}
	}
	s.f(`<path class="grid" d="%s" fill="none" stroke="#e4e4e4"/>`, grid.String())
	s.f(`<path class="axis" d="M%s %sV%sH%s%s" fill="none" stroke="#000"/>`, n(left), n(top), n(bot), n(left+pw), marks.String())
	s.f(`<g class="axis" text-anchor="middle">`)
	for i, t := range xa.ticks {
		s.f(`<text x="%s" y="%s">%s</text>`, n(left+xa.at(t)*pw), n(bot+15), clip(xa.labels[i], 14))
	}
	s.f(`</g><g class="axis" text-anchor="end">`)
	for i, l := range rows {
		s.f(`<text x="%s" y="%s">%s</text>`, n(left-6), n(ly[i]+4), clip(l, int((left-12)/charW)))
	}
	s.f(`</g>`)
	if xlabel != "" {
		s.f(`<text class="axis-label" x="%s" y="%s" text-anchor="middle">%s</text>`, n(left+pw/2), n(bot+31), clip(xlabel, int(pw/charW)))
	}
}

// labelColumn sizes the left column of row or y labels: the longest label,
// capped at a share of the width.
func labelColumn(labels []string, w int, share float64) float64 {
	return float64(min(maxRunes(labels), int(float64(w)*share/charW)))*charW + 14
}

func maxRunes(ss []string) int {
	m := 0
	for _, s := range ss {
		m = max(m, runes(s))
	}
	return m
}
