package chart

import (
	"cmp"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// Series is one line of a Line chart.
type Series struct {
	Name string
	// X and Y pair up to the shorter one's length. A point with a NaN or
	// infinite coordinate is a gap: the line breaks there. A finite x of a
	// gap still widens the x range, so an all-NaN series can pin the axis
	// to a run's span.
	X, Y   []float64
	Color  string // "" → Color(index)
	Dashed bool
	// Step draws a step line, each value held until the next x, for
	// per-second counts.
	Step bool
}

// Band shades the x-range [From, To] behind the data (fault windows); To <=
// From (or NaN) draws a vertical marker line at From instead. A band with a
// NaN From is not drawn; a band's ends widen the x range so that it shows.
type Band struct {
	From, To float64
	Label    string // drawn at the top of the band, truncated to fit, full text in <title>
	Color    string // "" → a light grey-red
}

// Line is a line chart of series over shaded bands.
type Line struct {
	Title          string
	XLabel, YLabel string
	Width, Height  int // 0 → 640 × 220; the height grows to keep the plot at least 40px high
	// XScale may be any Scale; YScale Linear or Log10 (Percentile counts as
	// Linear on y).
	XScale, YScale Scale
	YZero          bool // y axis starts at 0 (linear)
	Series         []Series
	Bands          []Band
	// Tick labels; nil → compact (1k, 2.5M, 0.25). On a Percentile axis nil
	// labels ticks 0, 90, 99, 99.9 …; a func is given the percentile.
	YFormat, XFormat func(float64) string
}

// SVG renders the chart, with a legend of the named series below it.
// Without a single finite point it renders a frame saying "no data"; it
// never panics on NaN, Inf, empty or mismatched input.
func (c Line) SVG() template.HTML {
	w, h := width(c.Width), cmp.Or(max(c.Height, 0), defaultH)
	var xs, ys []float64
	for _, sr := range c.Series {
		for i := range min(len(sr.X), len(sr.Y)) {
			if finite(sr.X[i]) {
				xs = append(xs, sr.X[i])
			}
			if finite(sr.X[i]) && finite(sr.Y[i]) {
				ys = append(ys, sr.Y[i])
			}
		}
	}
	if len(ys) == 0 {
		return noData("line", w, h, c.Title)
	}
	for _, b := range c.Bands {
		if finite(b.From) {
			xs = append(xs, b.From)
		}
		if finite(b.From) && b.To > b.From && finite(b.To) {
			xs = append(xs, b.To)
		}
	}
	xa := newAxis(c.XScale, xs, false, true, c.XFormat)
	ya := newAxis(pick(c.YScale == Percentile, Linear, c.YScale), ys, c.YZero, false, c.YFormat)
	var keys []key
	for i, sr := range c.Series {
		if sr.Name != "" {
			keys = append(keys, key{sr.Name, cmp.Or(sr.Color, Color(i)), sr.Dashed})
		}
	}

	left := float64(min(maxRunes(ya.labels), 14))*charW + pick(c.YLabel != "", 30.0, 14)
	top := pick(c.Title != "", titleH+6.0, 10)
	right := 12.0
	if l := len(xa.labels); l > 0 && xa.at(xa.ticks[l-1]) > 0.99 {
		right = max(right, float64(min(runes(xa.labels[l-1]), 14))*charW/2+4)
	}
	pw := float64(w) - left - right
	xy, rows := layoutKeys(keys, float64(w)-left)
	bottom := 24 + float64(rows)*keyH + pick(c.XLabel != "", 16.0, 0)
	if ph := float64(h) - top - bottom; ph < 40 {
		h += int(math.Ceil(40 - ph))
	}
	ph := float64(h) - top - bottom
	bot := top + ph

	s := begin("line", w, h, c.Title)
	c.bands(s, &xa, left, top, pw, ph)
	frame(s, &xa, &ya, nil, 0, left, top, pw, bot, c.XLabel)
	if c.YLabel != "" {
		s.yLabel(c.YLabel, top+ph/2, ph)
	}
	s.f(`<g fill="none" stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round">`)
	for i, sr := range c.Series {
		s.f(`<path class="series" d="%s" stroke="%s"%s><title>%s</title></path>`, linePath(sr, &xa, &ya, left, bot, pw, ph),
			esc(cmp.Or(sr.Color, Color(i))), pick(sr.Dashed, ` stroke-dasharray="5 3"`, ""), esc(cmp.Or(sr.Name, "series "+strconv.Itoa(i+1))))
	}
	s.f(`</g>`)
	if len(keys) > 0 {
		drawKeys(s, keys, xy, left, bot+pick(c.XLabel != "", 50.0, 34), true)
	}
	return s.end()
}

// bands go beneath the grid and the data, so that both stay visible.
func (c Line) bands(s *svg, xa *axis, left, top, pw, ph float64) {
	for _, b := range c.Bands {
		if !finite(b.From) {
			continue
		}
		x1 := left + xa.pos(b.From)*pw
		s.f(`<g>`)
		if b.Label != "" {
			s.f(`<title>%s</title>`, esc(b.Label))
		}
		room := 14.0 * charW
		if finite(b.To) && b.To > b.From {
			room = xa.pos(b.To)*pw + left - x1
			s.f(`<rect class="band" x="%s" y="%s" width="%s" height="%s" fill="%s"/>`, n(x1), n(top), n(room), n(ph), esc(cmp.Or(b.Color, "#f3d3d0")))
		} else {
			s.f(`<path class="band" d="M%s %sv%s" stroke="%s" stroke-width="1.5" stroke-dasharray="3 2"/>`, n(x1), n(top), n(ph), esc(cmp.Or(b.Color, "#c46a62")))
		}
		// The group's tooltip holds the full label, so a clipped one
		// needs no second.
		if m := int((room - 4) / 5); b.Label != "" && m >= 2 {
			s.f(`<text class="band-label" x="%s" y="%s" font-size="9" fill="#444">%s</text>`, n(x1+2), n(top+10), esc(truncRunes(b.Label, m)))
		}
		s.f(`</g>`)
	}
}

// pathW writes path data in relative coordinates of whole tenths: deltas of
// rounded positions are exact, so nothing drifts, and short deltas keep a
// long series small.
type pathW struct {
	b   strings.Builder
	cmd byte
}

func (p *pathW) op(c byte, v ...int) {
	if c != p.cmd || c == 'M' {
		p.b.WriteByte(c)
		p.cmd = c
	}
	for _, x := range v {
		t := tstr(x)
		if l := p.b.Len(); t[0] != '-' && p.b.String()[l-1] >= '0' && p.b.String()[l-1] <= '9' {
			p.b.WriteByte(' ')
		}
		p.b.WriteString(t)
	}
}

func linePath(sr Series, xa, ya *axis, left, bot, pw, ph float64) string {
	var p pathW
	open, drawn := false, false
	var px, py int
	// A lone point between gaps would draw nothing; a zero-length segment
	// with round caps shows it as a dot.
	dot := func() {
		if open && !drawn {
			p.op('h', 0)
		}
	}
	for i := range min(len(sr.X), len(sr.Y)) {
		if !finite(sr.X[i]) || !finite(sr.Y[i]) {
			dot()
			open = false
			continue
		}
		x, y := tenths(left+xa.pos(sr.X[i])*pw), tenths(bot-ya.pos(sr.Y[i])*ph)
		switch {
		case !open:
			p.op('M', x, y)
			open, drawn = true, false
		case sr.Step:
			if x != px {
				p.op('h', x-px)
			}
			if y != py {
				p.op('v', y-py)
			}
			drawn = drawn || x != px || y != py
		case x != px || y != py:
			p.op('l', x-px, y-py)
			drawn = true
		}
		px, py = x, y
	}
	dot()
	return p.b.String()
}
