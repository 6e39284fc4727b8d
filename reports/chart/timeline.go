package chart

import (
	"cmp"
	"html/template"
)

// Span is a time range on a TimelineRow. A To below From or NaN is
// open-ended: the span runs to XMax. A span with a NaN From is not drawn.
type Span struct {
	From, To float64
	Text     string // drawn inside when it fits, always in the tooltip
	Color    string // "" → Color(row index)
}

// Instant is a moment on a TimelineRow; one with a NaN At is not drawn.
type Instant struct {
	At    float64
	Text  string // tooltip
	Color string // "" → Color(row index)
}

// TimelineRow is one labelled lane of a Timeline.
type TimelineRow struct {
	Label    string
	Spans    []Span
	Instants []Instant
}

// Timeline is rows of spans and instants over a shared x axis (fault events
// per source).
type Timeline struct {
	Title, XLabel string
	Width         int // 0 → 640; height follows the row count
	// 0,0 (or any XMax <= XMin) → from the data. Spans are clipped to the
	// range; spans and instants wholly outside it are left out.
	XMin, XMax float64
	Rows       []TimelineRow
}

// SVG renders the chart. Without rows, or with no finite time in them and no
// XMin/XMax, it renders a frame saying "no data".
func (t Timeline) SVG() template.HTML {
	w := width(t.Width)
	var xs []float64
	for _, r := range t.Rows {
		for _, sp := range r.Spans {
			if finite(sp.From) {
				xs = append(xs, sp.From)
			}
			if finite(sp.From) && sp.To >= sp.From && finite(sp.To) {
				xs = append(xs, sp.To)
			}
		}
		for _, in := range r.Instants {
			if finite(in.At) {
				xs = append(xs, in.At)
			}
		}
	}
	if t.XMax > t.XMin && finite(t.XMin) && finite(t.XMax) {
		xs = []float64{t.XMin, t.XMax}
	}
	if len(t.Rows) == 0 || len(xs) == 0 {
		return noData("timeline", w, 80, t.Title)
	}
	xa := newAxis(Linear, xs, false, true, nil)
	var labels []string
	for _, r := range t.Rows {
		labels = append(labels, r.Label)
	}
	left := labelColumn(labels, w, 0.3)
	pw := float64(w) - left - 16
	top := plotTop(t.Title)
	const rowH, spanH = 22.0, 14.0
	bot := top + float64(len(t.Rows))*rowH

	s := begin("timeline", w, int(bot)+pick(t.XLabel != "", 40, 24), t.Title)
	frame(s, &xa, nil, labels, rowH, left, top, pw, bot, t.XLabel)
	for i, r := range t.Rows {
		y := top + float64(i)*rowH + (rowH-spanH)/2
		for _, sp := range r.Spans {
			open := !(sp.To >= sp.From)
			end := pick(open, xa.hi, sp.To)
			if !finite(sp.From) || sp.From > xa.hi || end < xa.lo {
				continue
			}
			x1 := left + xa.pos(sp.From)*pw
			// A zero-length span still shows, one pixel wide.
			wd := max(1, left+xa.pos(end)*pw-x1)
			tip := compact(sp.From) + pick(open, "– (open)", "–"+compact(sp.To))
			c := esc(cmp.Or(sp.Color, Color(i)))
			s.f(`<g><title>%s</title><rect class="span" x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.35" stroke="%s"/>`,
				esc(pick(sp.Text != "", sp.Text+": ", "")+tip), n(x1), n(y), n(wd), n(spanH), c, c)
			if m := int((wd - 6) / charW); sp.Text != "" && m >= 3 {
				s.f(`<text x="%s" y="%s" font-size="10">%s</text>`, n(x1+3), n(y+spanH-3.5), esc(truncRunes(sp.Text, m)))
			}
			s.f(`</g>`)
		}
		for _, in := range r.Instants {
			if !finite(in.At) || in.At < xa.lo || in.At > xa.hi {
				continue
			}
			c := esc(cmp.Or(in.Color, Color(i)))
			s.f(`<path class="instant" d="M%s %sv%sm-4 -%sh8l-4 5z" fill="%s" stroke="%s" stroke-width="1.5"><title>%s</title></path>`,
				n(left+xa.pos(in.At)*pw), n(y-2), n(spanH+4), n(spanH+4), c, c, esc(pick(in.Text != "", in.Text+" ", "")+"at "+compact(in.At)))
		}
	}
	return s.end()
}
