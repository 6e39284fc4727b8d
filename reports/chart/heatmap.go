package chart

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
)

// HeatCell is one cell of a Heatmap.
type HeatCell struct {
	Value float64 // a NaN or infinite Value counts as Empty
	Text  string  // printed in the cell, e.g. "2" or "65%"
	Title string  // tooltip; "" → "row / column: Text"
	Safe  bool    // marked with a ✓ and a green outline
	Empty bool    // no data: hatched/grey, no colour
}

// Heatmap is a grid of labelled cells coloured from good (light) to bad
// (dark red) by Value.
type Heatmap struct {
	Title          string
	XLabel, YLabel string
	Columns, Rows  []string     // labels
	Cells          [][]HeatCell // [row][column]; missing cells are Empty, extra ones ignored
	Width          int          // 0 → fits the columns
}

// heatStops run from light to dark red (ColorBrewer Reds); the lightest
// still shows against a white page.
var heatStops = [][3]float64{
	{0xfe, 0xe5, 0xd9}, {0xfc, 0xbb, 0xa1}, {0xfc, 0x92, 0x72}, {0xfb, 0x6a, 0x4a},
	{0xef, 0x3b, 0x2c}, {0xcb, 0x18, 0x1d}, {0x99, 0x00, 0x0d},
}

// heat returns the colour at t in [0,1] and whether text on it must be white
// to contrast.
func heat(t float64) (string, bool) {
	t = max(0, min(1, t)) * float64(len(heatStops)-1)
	i := min(int(t), len(heatStops)-2)
	var c [3]int
	lum := 0.0
	for k, wt := range [3]float64{0.2126, 0.7152, 0.0722} {
		v := math.Round(heatStops[i][k] + (heatStops[i+1][k]-heatStops[i][k])*(t-float64(i)))
		c[k], lum = int(v), lum+wt*math.Pow(v/255, 2.2)
	}
	return fmt.Sprintf("#%02x%02x%02x", c[0], c[1], c[2]), lum < 0.18
}

// SVG renders the grid with the column labels on top and the row labels on
// the left. Values are normalised over the non-empty cells; if they are all
// equal a cell is lightest, or medium when that value is nonzero. Labels and
// cell texts longer than the cells are clipped with the full text as a
// tooltip. Without rows or columns it renders a frame saying "no data".
func (h Heatmap) SVG() template.HTML {
	nc, nr := len(h.Columns), len(h.Rows)
	if nc == 0 || nr == 0 {
		return noData("heatmap", max(h.Width, 320), 100, h.Title)
	}
	cell := func(r, c int) HeatCell {
		if r < len(h.Cells) && c < len(h.Cells[r]) {
			hc := h.Cells[r][c]
			hc.Empty = hc.Empty || !finite(hc.Value)
			return hc
		}
		return HeatCell{Empty: true}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	chars := maxRunes(h.Columns)
	for r := range nr {
		for c := range nc {
			hc := cell(r, c)
			if !hc.Empty {
				lo, hi = min(lo, hc.Value), max(hi, hc.Value)
			}
			chars = max(chars, runes(hc.Text)+pick(hc.Safe, 2, 0))
		}
	}
	left := labelColumn(h.Rows, 600, 0.3) + pick(h.YLabel != "", 16.0, 0)
	cw := max(28, min(120, float64(chars)*charW+12))
	w := int(math.Ceil(left + float64(nc)*cw + 8))
	if h.Width > 0 {
		w, cw = h.Width, max(12, (float64(h.Width)-left-8)/float64(nc))
	}
	const ch = 22.0
	top := pick(h.Title != "", titleH, 4.0) + pick(h.XLabel != "", 16.0, 0) + 18
	s := begin("heatmap", w, int(top+float64(nr)*ch+8), h.Title)
	if h.XLabel != "" {
		s.f(`<text class="axis-label" x="%s" y="%s" text-anchor="middle">%s</text>`, n(left+float64(nc)*cw/2), n(top-22), clip(h.XLabel, int(float64(nc)*cw/charW)))
	}
	if h.YLabel != "" {
		s.yLabel(h.YLabel, top+float64(nr)*ch/2, float64(nr)*ch)
	}
	s.f(`<g class="axis" text-anchor="middle">`)
	for c, l := range h.Columns {
		s.f(`<text x="%s" y="%s">%s</text>`, n(left+(float64(c)+0.5)*cw), n(top-6), clip(l, int((cw-4)/charW)))
	}
	s.f(`</g><g class="axis" text-anchor="end">`)
	for r, l := range h.Rows {
		s.f(`<text x="%s" y="%s">%s</text>`, n(left-6), n(top+(float64(r)+0.5)*ch+4), clip(l, 30))
	}
	s.f(`</g><g text-anchor="middle">`)
	for r := range nr {
		for c := range nc {
			hc := cell(r, c)
			x, y := left+float64(c)*cw+1, top+float64(r)*ch+1
			tip := cmp.Or(hc.Title, h.Rows[r]+" / "+h.Columns[c]+": "+cmp.Or(hc.Text, pick(hc.Empty, "no data", compact(hc.Value))))
			fill, ink, class := "#eeeeee", "#555", "cell empty"
			if !hc.Empty {
				t := pick(hi > lo, (hc.Value-lo)/(hi-lo), pick(hc.Value != 0, 0.5, 0))
				var dark bool
				fill, dark = heat(t)
				class, ink = "cell", pick(dark, "#fff", "#000")
			}
			// A safe cell's outline is inset by its half-width so that
			// neighbours do not cover it.
			in := pick(hc.Safe, 1.0, 0)
			s.f(`<g><title>%s</title><rect class="%s" x="%s" y="%s" width="%s" height="%s" fill="%s"%s/>`, esc(tip), class+pick(hc.Safe, " safe", ""),
				n(x+in), n(y+in), n(cw-2-2*in), n(ch-2-2*in), fill, pick(hc.Safe, ` stroke="#1a7f37" stroke-width="2"`, ""))
			if hc.Empty {
				s.f(`<path d="M%s %sl%s %s" stroke="#c8c8c8"/>`, n(x), n(y+ch-2), n(cw-2), n(2-ch))
			}
			if mark := pick(hc.Safe, "✓ ", ""); mark != "" || hc.Text != "" {
				s.f(`<text x="%s" y="%s" fill="%s">%s%s</text>`, n(x+cw/2-1), n(y+ch/2+3), ink, mark, clip(hc.Text, int((cw-6)/charW)-runes(mark)))
			}
			s.f(`</g>`)
		}
	}
	s.f(`</g>`)
	return s.end()
}
