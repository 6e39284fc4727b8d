package chart

import (
	"cmp"
	"html/template"
	"slices"
)

// Segment is one part of a Bar. Segments of the same Name share a colour and
// a legend entry.
type Segment struct {
	Name  string
	Value float64 // NaN, infinite or negative draws nothing
	Color string  // "" → the first colour given for this Name, else Color(its legend index), else (unnamed) Color(its position)
}

// Bar is one labelled row of a Bars chart.
type Bar struct {
	Label    string
	Segments []Segment
}

// Bars is a chart of horizontal bars, each a stack of segments (outcome
// classes per cell, or p50/p99 timing pairs).
type Bars struct {
	Title, XLabel string
	Width         int // 0 → 640; height follows the bar count
	Bars          []Bar
	Stacked       bool  // true: segments stack; false: segments are grouped side by side (thin bars)
	XScale        Scale // Linear or Log10 (Percentile counts as Linear)
	Format        func(float64) string
}

// SVG renders the chart: labels on the left, clipped to fit with the full
// text as a tooltip, a legend of segment names above, and the total (stacked)
// or each value (grouped) at the bar's end. Without bars it renders a frame
// saying "no data"; a bar whose values are all zero or invalid is an empty
// row.
func (b Bars) SVG() template.HTML {
	w := width(b.Width)
	if len(b.Bars) == 0 {
		return noData("bars", w, 80, b.Title)
	}
	format := pick(b.Format != nil, b.Format, compact)
	val := func(v float64) float64 { return pick(finite(v) && v > 0, v, 0) }
	var keys []key
	var labels, values []string
	var vs []float64
	groups := 1
	for _, bar := range b.Bars {
		labels, groups = append(labels, bar.Label), max(groups, len(bar.Segments))
		total := 0.0
		for _, sg := range bar.Segments {
			total += val(sg.Value)
			if !b.Stacked {
				vs, values = append(vs, val(sg.Value)), append(values, format(val(sg.Value)))
			}
			i := slices.IndexFunc(keys, func(k key) bool { return k.name == sg.Name })
			if i < 0 && sg.Name != "" {
				keys, i = append(keys, key{name: sg.Name}), len(keys)
			}
			if i >= 0 {
				keys[i].color = cmp.Or(keys[i].color, sg.Color)
			}
		}
		if b.Stacked {
			vs, values = append(vs, total), append(values, format(total))
		}
	}
	for i := range keys {
		keys[i].color = cmp.Or(keys[i].color, Color(i))
	}
	xa := newAxis(pick(b.XScale == Log10, Log10, Linear), vs, true, false, format)

	left := labelColumn(labels, w, 0.35)
	pw := float64(w) - left - float64(min(maxRunes(values), 12))*charW - 12
	top := plotTop(b.Title)
	xy, rows := layoutKeys(keys, float64(w)-8)
	ky := top + 6
	top += float64(rows) * keyH
	barH, rowH := pick(b.Stacked, 16.0, 9), pick(b.Stacked, 22.0, float64(groups)*10+8)
	bot := top + float64(len(b.Bars))*rowH

	s := begin("bars", w, int(bot)+pick(b.XLabel != "", 40, 24), b.Title)
	drawKeys(s, keys, xy, 4, ky, false)
	frame(s, &xa, nil, labels, rowH, left, top, pw, bot, b.XLabel)
	s.f(`<g font-size="10" fill="#333">`)
	vi := 0
	for i, bar := range b.Bars {
		y := top + float64(i)*rowH + pick(b.Stacked, (rowH-barH)/2, 4)
		cum := 0.0
		for j, sg := range bar.Segments {
			v, from := val(sg.Value), pick(b.Stacked, cum, 0)
			x1, x2 := left+xa.pos(from)*pw, left+xa.pos(from+v)*pw
			color := cmp.Or(sg.Color, Color(j))
			if k := slices.IndexFunc(keys, func(k key) bool { return k.name == sg.Name }); sg.Color == "" && k >= 0 {
				color = keys[k].color
			}
			tip := bar.Label + " · " + cmp.Or(sg.Name, "value") + ": " + format(v)
			s.f(`<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`, n(x1), n(y), n(x2-x1), n(barH), esc(color), esc(tip))
			if cum += v; !b.Stacked {
				s.f(`<text class="value" x="%s" y="%s" font-size="8">%s</text>`, n(x2+3), n(y+barH-1), esc(values[vi]))
				vi, y = vi+1, y+10
			}
		}
		if b.Stacked {
			s.f(`<text class="value" x="%s" y="%s">%s</text>`, n(left+xa.pos(cum)*pw+4), n(y+barH-4), esc(values[i]))
		}
	}
	s.f(`</g>`)
	return s.end()
}
