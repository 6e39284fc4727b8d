package chart

import (
	"encoding/xml"
	"errors"
	"html/template"
	"io"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// elem is a parsed SVG element: its name, attributes and direct text.
type elem struct {
	name  string
	attr  map[string]string
	text  string
	title string // text of a <title> child
	up    *elem
}

// tip is the tooltip that applies to e: its own or its group's.
func (e *elem) tip() string {
	if e.title == "" && e.up != nil {
		return e.up.tip()
	}
	return e.title
}

// parse checks what every chart must satisfy and returns its elements in
// document order.
func parse(t *testing.T, out template.HTML) []*elem {
	t.Helper()
	s := string(out)
	require.True(t, strings.HasPrefix(s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 `), s)
	for _, bad := range []string{"NaN", "Inf", "<script", "href", "url("} {
		require.NotContains(t, s, bad)
	}
	require.Equal(t, 1, strings.Count(s, "http://"), "only the xmlns URL")
	require.NotRegexp(t, `(?:\s(?:x|y|x1|x2|y1|y2|width|height|d)="[^"]*\d\.\d\d)`, s, "coordinates have at most one decimal")

	var els, stack []*elem
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, s)
		switch tok := tok.(type) {
		case xml.StartElement:
			e := &elem{name: tok.Name.Local, attr: map[string]string{}}
			if len(stack) > 0 {
				e.up = stack[len(stack)-1]
			}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				require.Equal(t, "svg", e.name)
				require.Equal(t, "http://www.w3.org/2000/svg", tok.Name.Space)
				require.Equal(t, "img", e.attr["role"])
				require.Contains(t, e.attr["class"], "chart ")
			}
			els, stack = append(els, e), append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top := stack[len(stack)-1]
			top.text += string(tok)
			if top.name == "title" && len(stack) > 1 {
				stack[len(stack)-2].title += string(tok)
			}
		}
	}
	require.Empty(t, stack)
	require.Equal(t, "title", els[1].name, "the accessible name comes first")
	require.NotEmpty(t, els[1].text)
	return els
}

func find(els []*elem, name, class string) []*elem {
	var r []*elem
	for _, e := range els {
		if e.name == name && (class == "" || strings.HasPrefix(e.attr["class"], class)) {
			r = append(r, e)
		}
	}
	return r
}

func hasText(els []*elem, text string) bool {
	for _, e := range els {
		if e.name == "text" && e.text == text {
			return true
		}
	}
	return false
}

func ramp(n int, f func(i int) float64) (xs, ys []float64) {
	for i := range n {
		xs, ys = append(xs, float64(i)), append(ys, f(i))
	}
	return xs, ys
}

// numbers returns the numbers of path data, for checks on positions.
func numbers(d string) []float64 {
	var r []float64
	for _, m := range regexp.MustCompile(`-?\d+(?:\.\d)?`).FindAllString(d, -1) {
		v, _ := strconv.ParseFloat(m, 64)
		r = append(r, v)
	}
	return r
}

// plotBox reads the plot's left, top, bottom and right from the axis path
// "M left top V bottom H right…".
func plotBox(t *testing.T, els []*elem) (left, top, bot, right float64) {
	t.Helper()
	ax := find(els, "path", "axis")
	require.NotEmpty(t, ax)
	v := numbers(ax[0].attr["d"])
	return v[0], v[1], v[2], v[3]
}

func TestLineStructure(t *testing.T) {
	xs, ys := ramp(120, func(i int) float64 { return 1000 + 300*math.Sin(float64(i)/7) })
	_, ys2 := ramp(120, func(i int) float64 { return float64(i % 7) })
	c := Line{
		Title: "Requests per second", XLabel: "time (s)", YLabel: "req/s", YZero: true,
		Series: []Series{{Name: "accepted", X: xs, Y: ys}, {Name: "refused", X: xs, Y: ys2, Dashed: true, Step: true}, {X: xs, Y: ys2}},
		Bands:  []Band{{From: 20, To: 40, Label: "kill worker 1"}, {From: 60, To: 70}, {From: 80, Label: "restart"}, {From: math.NaN(), To: 3}},
	}
	out := c.SVG()
	els := parse(t, out)
	series := find(els, "path", "series")
	require.Len(t, series, 3)
	assert.Equal(t, "accepted", series[0].title)
	assert.Equal(t, "series 3", series[2].title, "an unnamed series still has a tooltip")
	assert.Equal(t, Color(1), series[1].attr["stroke"])
	assert.NotEmpty(t, series[1].attr["stroke-dasharray"])
	assert.Regexp(t, `h.*v`, series[1].attr["d"], "a step line")
	assert.Len(t, find(els, "rect", "band"), 2, "two ranges; the marker is a line")
	assert.Len(t, find(els, "path", "band"), 1)
	assert.Equal(t, "kill worker 1", find(els, "rect", "band")[0].tip())
	assert.Equal(t, "restart", find(els, "path", "band")[0].tip())
	assert.True(t, hasText(els, "0"), "YZero")
	assert.True(t, hasText(els, "1.5k"))
	assert.True(t, hasText(els, "time (s)"))
	legend := find(els, "g", "legend")
	require.Len(t, legend, 1)
	assert.Contains(t, string(out), ">accepted</text>")
	assert.Contains(t, string(out), ">refused</text>")
	assert.Less(t, len(out), 6*1024, "a typical line chart stays small")

	// Bands lie beneath the data.
	assert.Less(t, strings.Index(string(out), `class="band"`), strings.Index(string(out), `class="series"`))
	assert.Equal(t, out, c.SVG(), "deterministic")
}

func TestLineBandsWidenTheRange(t *testing.T) {
	els := parse(t, Line{Series: []Series{{X: []float64{0, 10}, Y: []float64{1, 2}}}, Bands: []Band{{From: 5, To: 20, Label: "a long label that cannot fit"}}}.SVG())
	left, _, _, right := plotBox(t, els)
	band := find(els, "rect", "band")
	require.Len(t, band, 1)
	x, _ := strconv.ParseFloat(band[0].attr["x"], 64)
	w, _ := strconv.ParseFloat(band[0].attr["width"], 64)
	assert.InDelta(t, right, x+w, 0.2)
	assert.InDelta(t, left+(right-left)/4, x, 0.2)
}

func TestLineGapsWidenTheRange(t *testing.T) {
	pad := Series{X: []float64{0, 100}, Y: []float64{math.NaN(), math.NaN()}}
	els := parse(t, Line{Series: []Series{{X: []float64{40, 60}, Y: []float64{1, 1}}, pad}}.SVG())
	left, _, _, right := plotBox(t, els)
	series := find(els, "path", "series")
	require.Len(t, series, 2)
	v := numbers(series[0].attr["d"])
	assert.InDelta(t, left+0.4*(right-left), v[0], 0.1)
	assert.Empty(t, series[1].attr["d"])
	assert.True(t, hasText(els, "100"))
	assert.True(t, hasText(parse(t, Line{Series: []Series{pad}}.SVG()), "no data"))
}

func TestLinePercentile(t *testing.T) {
	x := []float64{0, 50, 90, 99, 99.9}
	els := parse(t, Line{XScale: Percentile, YScale: Log10, Series: []Series{{Name: "p", X: x, Y: []float64{1, 2, 5, 20, 300}}}}.SVG())
	for _, l := range []string{"0", "90", "99", "99.9"} {
		assert.True(t, hasText(els, l), l)
	}
	assert.False(t, hasText(els, "99.99"), "ticks stop at the data's max")
	left, _, _, right := plotBox(t, els)
	v := numbers(find(els, "path", "series")[0].attr["d"])
	// 90, 99 and 99.9 are a third of the width apart.
	third := (right - left) / 3
	assert.InDelta(t, left, v[0], 0.1)
	xAt90 := v[0] + v[2] + v[4]
	assert.InDelta(t, left+third, xAt90, 0.3)
	assert.InDelta(t, right, xAt90+v[6]+v[8], 0.3)

	deep := parse(t, Line{XScale: Percentile, Series: []Series{{X: []float64{0, 99.999, 100}, Y: []float64{1, 2, 3}}}}.SVG())
	assert.True(t, hasText(deep, "99.999"))
	assert.False(t, hasText(deep, "99.9999"), "100 does not stretch the axis")

	custom := parse(t, Line{XScale: Percentile, XFormat: func(p float64) string { return "p" + strconv.FormatFloat(p, 'f', -1, 64) }, Series: []Series{{X: x, Y: x}}}.SVG())
	assert.True(t, hasText(custom, "p99.9"))
}

func TestLineLogWithZeros(t *testing.T) {
	out := Line{YScale: Log10, Series: []Series{{X: []float64{0, 1, 2, 3}, Y: []float64{0, 1, 10, 1000}}}}.SVG()
	els := parse(t, out)
	for _, l := range []string{"1", "10", "100", "1k"} {
		assert.True(t, hasText(els, l), l)
	}
	_, _, bot, _ := plotBox(t, els)
	v := numbers(find(els, "path", "series")[0].attr["d"])
	assert.InDelta(t, bot, v[1], 0.1, "0 is clamped to the smallest value shown")
	assert.InDelta(t, bot, v[1]+v[3], 0.1, "1 is that value")

	neg := parse(t, Line{YScale: Log10, XScale: Log10, Series: []Series{{X: []float64{-1, 0}, Y: []float64{-5, 0}}}}.SVG())
	assert.Len(t, find(neg, "path", "series"), 1)
}

func TestLineGaps(t *testing.T) {
	y := []float64{1, 2, math.NaN(), 3, 4, math.Inf(1), 5}
	x := []float64{0, 1, 2, 3, 4, 5, 6}
	d := find(parse(t, Line{Series: []Series{{X: x, Y: y}}}.SVG()), "path", "series")[0].attr["d"]
	assert.Equal(t, 3, strings.Count(d, "M"), d)
	assert.Contains(t, d, "h0", "a lone point shows as a dot")

	d = find(parse(t, Line{Series: []Series{{X: x[:5], Y: y[:5]}}}.SVG()), "path", "series")[0].attr["d"]
	assert.Equal(t, 2, strings.Count(d, "M"), d)
	assert.NotContains(t, d, "h0")

	// Mismatched lengths pair up to the shorter.
	assert.Len(t, find(parse(t, Line{Series: []Series{{X: x, Y: y[:2]}}}.SVG()), "path", "series"), 1)
}

func TestLineEmpty(t *testing.T) {
	for name, c := range map[string]Line{
		"zero":    {},
		"titled":  {Title: "t", Bands: []Band{{From: 1, To: 2}}},
		"nan":     {Series: []Series{{X: []float64{1, 2}, Y: []float64{math.NaN(), math.NaN()}}}},
		"no y":    {Series: []Series{{Name: "a", X: []float64{1, 2}}}},
		"inf x":   {Series: []Series{{X: []float64{math.Inf(-1)}, Y: []float64{1}}}},
		"tiny":    {Width: 10, Height: 10},
		"log":     {YScale: Log10, XScale: Percentile},
		"no data": {Series: []Series{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			els := parse(t, c.SVG())
			assert.True(t, hasText(els, "no data"))
		})
	}
}

func TestLineDegenerate(t *testing.T) {
	for _, c := range []Line{
		{Series: []Series{{X: []float64{5}, Y: []float64{7}}}},
		{Series: []Series{{X: []float64{5, 5}, Y: []float64{0, 0}}}, YZero: true},
		{Series: []Series{{X: []float64{-1e308, 1e308}, Y: []float64{-1e308, 1e308}}}},
		{Series: []Series{{X: []float64{1e-9, 2e-9}, Y: []float64{1e-12, 1.0000001e-12}}}},
		{Series: []Series{{X: []float64{1e17, 1e17 + 64}, Y: []float64{1, 2}}}},
		{Series: []Series{{X: []float64{0, 1}, Y: []float64{1, 2}}}, Width: 30, Height: 20, Title: "tiny", XLabel: "x", YLabel: "y"},
		{Series: []Series{{X: []float64{0, 1}, Y: []float64{1e-300, 1e300}}}, YScale: Log10},
	} {
		els := parse(t, c.SVG())
		assert.Len(t, find(els, "path", "series"), 1)
	}
}

func TestEscaping(t *testing.T) {
	nasty := `a<b&c>"d'` + "\x00\x1b\xff"
	outs := []template.HTML{
		Line{Title: nasty, XLabel: nasty, YLabel: nasty, Series: []Series{{Name: nasty, Color: nasty, X: []float64{1, 2}, Y: []float64{1, 2}}}, Bands: []Band{{From: 1, To: 2, Label: nasty, Color: nasty}}}.SVG(),
		Line{Title: nasty}.SVG(),
		Bars{Title: nasty, XLabel: nasty, Bars: []Bar{{Label: nasty, Segments: []Segment{{Name: nasty, Value: 1, Color: nasty}}}}}.SVG(),
		Heatmap{Title: nasty, XLabel: nasty, YLabel: nasty, Columns: []string{nasty}, Rows: []string{nasty}, Cells: [][]HeatCell{{{Value: 1, Text: nasty, Title: nasty}}}}.SVG(),
		Timeline{Title: nasty, XLabel: nasty, Rows: []TimelineRow{{Label: nasty, Spans: []Span{{From: 0, To: 1, Text: nasty, Color: nasty}}, Instants: []Instant{{At: 0.5, Text: nasty, Color: nasty}}}}}.SVG(),
	}
	for _, out := range outs {
		parse(t, out)
		assert.Contains(t, string(out), "a&lt;b&amp;c&gt;&#34;d&#39;")
		assert.NotContains(t, string(out), "<b&")
	}
}

func lum(t *testing.T, hex string) float64 {
	t.Helper()
	require.Len(t, hex, 7, hex)
	v, err := strconv.ParseUint(hex[1:], 16, 32)
	require.NoError(t, err)
	return 0.2126*float64(v>>16) + 0.7152*float64(v>>8&0xff) + 0.0722*float64(v&0xff)
}

func TestHeatmap(t *testing.T) {
	h := Heatmap{
		Title: "failures", XLabel: "workers", YLabel: "backlog",
		Columns: []string{"1", "2", "4", "a very long column label indeed, longer than any cell can hold"},
		Rows:    []string{"128", "1024", "4096"},
		Cells: [][]HeatCell{
			{{Value: 0, Text: "0", Safe: true}, {Value: 3, Text: "3"}, {Value: 9, Text: "9"}, {Empty: true, Text: "—"}},
			{{Value: 1, Text: "1"}, {Value: 5, Text: "5"}, {Value: 7, Text: "7", Safe: true}},
			{{Value: math.NaN()}},
		},
	}
	out := h.SVG()
	els := parse(t, out)
	cells := find(els, "rect", "cell")
	require.Len(t, cells, 12)
	assert.Equal(t, "128 / 2: 3", cells[1].tip())
	assert.Equal(t, "4096 / 2: no data", cells[9].tip())
	assert.Equal(t, 2, strings.Count(string(out), "✓"))
	assert.Len(t, find(els, "rect", "cell empty"), 1+1+4, "Empty, NaN and missing cells")
	for _, c := range cells {
		if strings.HasPrefix(c.attr["class"], "cell empty") {
			assert.Equal(t, "#eeeeee", c.attr["fill"])
		} else {
			assert.NotEqual(t, "#eeeeee", c.attr["fill"])
		}
		assert.Equal(t, strings.Contains(c.attr["class"], "safe"), c.attr["stroke"] == "#1a7f37")
	}
	// Higher values are darker: 0 < 1 < 3 < 5 < 7 < 9.
	order := []int{0, 4, 1, 5, 6, 2}
	for i := 1; i < len(order); i++ {
		assert.Greater(t, lum(t, cells[order[i-1]].attr["fill"]), lum(t, cells[order[i]].attr["fill"]))
	}
	texts := find(els, "text", "")
	var nine *elem
	for _, e := range texts {
		if e.text == "9" {
			nine = e
		}
	}
	require.NotNil(t, nine)
	assert.Equal(t, "#fff", nine.attr["fill"], "white on the darkest cell")
	assert.Contains(t, string(out), "…")
	assert.Contains(t, string(out), "<title>a very long column label indeed, longer than any cell can hold</title>")
	assert.Equal(t, out, h.SVG())

	narrow := parse(t, Heatmap{Columns: []string{"a", "b"}, Rows: []string{"r"}, Width: 40, Cells: [][]HeatCell{{{Value: 1, Text: "long text", Safe: true}, {Value: 2, Text: "x"}}}}.SVG())
	assert.Len(t, find(narrow, "rect", "cell"), 2)
}

func TestHeatmapEqualValues(t *testing.T) {
	light, _ := heat(0)
	medium, _ := heat(0.5)
	for v, want := range map[float64]string{0: light, 4: medium} {
		els := parse(t, Heatmap{Columns: []string{"a", "b"}, Rows: []string{"r"}, Cells: [][]HeatCell{{{Value: v}, {Value: v}}}}.SVG())
		for _, c := range find(els, "rect", "cell") {
			assert.Equal(t, want, c.attr["fill"], v)
		}
	}
	assert.True(t, hasText(parse(t, Heatmap{}.SVG()), "no data"))
	assert.True(t, hasText(parse(t, Heatmap{Columns: []string{"a"}}.SVG()), "no data"))
}

func TestBarsStacked(t *testing.T) {
	b := Bars{
		Title: "outcomes", XLabel: "count", Stacked: true,
		Bars: []Bar{
			{Label: "cell a=1", Segments: []Segment{{Name: "ok", Value: 900}, {Name: "refused", Value: 50}, {Name: "reset", Value: 10}}},
			{Label: strings.Repeat("long label ", 20), Segments: []Segment{{Name: "ok", Value: 700}, {Name: "reset", Value: 300, Color: "#123456"}}},
			{Label: "nothing", Segments: []Segment{{Name: "ok", Value: math.NaN()}, {Name: "ok", Value: -3}}},
			{Label: "no segments"},
		},
	}
	out := b.SVG()
	els := parse(t, out)
	bars := find(els, "rect", "bar")
	require.Len(t, bars, 7)
	assert.Equal(t, bars[0].attr["fill"], bars[3].attr["fill"], "one colour per name")
	assert.Equal(t, "#123456", bars[2].attr["fill"], "a name takes the first colour given")
	assert.Equal(t, "cell a=1 · ok: 900", bars[0].title)
	assert.True(t, hasText(els, "960"))
	assert.True(t, hasText(els, "1k"))
	assert.Len(t, find(els, "text", "value"), 4)
	legend := find(els, "g", "legend")
	require.Len(t, legend, 1)
	for _, name := range []string{"ok", "refused", "reset"} {
		assert.True(t, hasText(els, name), name)
	}
	assert.Contains(t, string(out), "…")
	// Stacks are contiguous.
	x := func(e *elem, a string) float64 { v, _ := strconv.ParseFloat(e.attr[a], 64); return v }
	assert.InDelta(t, x(bars[0], "x")+x(bars[0], "width"), x(bars[1], "x"), 0.11)
	assert.Equal(t, out, b.SVG())
}

func TestBarsGroupedLog(t *testing.T) {
	b := Bars{XScale: Log10, Format: func(v float64) string { return strconv.FormatFloat(v*1000, 'f', -1, 64) + "ms" }, Bars: []Bar{
		{Label: "a", Segments: []Segment{{Name: "p50", Value: 0.002}, {Name: "p99", Value: 0.12}}},
		{Label: "b", Segments: []Segment{{Name: "p50", Value: 0}, {Name: "p99", Value: 1.5}}},
	}}
	els := parse(t, b.SVG())
	bars := find(els, "rect", "bar")
	require.Len(t, bars, 4)
	assert.Equal(t, bars[0].attr["fill"], bars[2].attr["fill"])
	assert.NotEqual(t, bars[0].attr["fill"], bars[1].attr["fill"])
	assert.Equal(t, "0", bars[2].attr["width"], "0 sits at the axis's start")
	assert.True(t, hasText(els, "120ms"))
	assert.True(t, hasText(els, "1000ms"), "decade tick")
	assert.Len(t, find(els, "text", "value"), 4)
	assert.True(t, hasText(parse(t, Bars{}.SVG()), "no data"))
	parse(t, Bars{Bars: []Bar{{Label: "zero", Segments: []Segment{{Value: 0}}}}}.SVG())
	parse(t, Bars{Stacked: true, Bars: []Bar{{Label: "overflow", Segments: []Segment{{Value: math.MaxFloat64}, {Value: math.MaxFloat64}}}}}.SVG())
}

func TestTimeline(t *testing.T) {
	tl := Timeline{Title: "faults", XLabel: "time (s)", Rows: []TimelineRow{
		{Label: "worker kill", Spans: []Span{{From: 10, To: 20, Text: "worker 1 down"}, {From: 50, To: math.NaN(), Text: "open"}, {From: 55, To: 1}}, Instants: []Instant{{At: 30, Text: "restart"}, {At: math.NaN()}}},
		{Label: "client", Spans: []Span{{From: 0, To: 60, Text: "silent clients"}, {From: math.NaN(), To: 3}, {From: 30, To: 30}}},
		{Label: "idle"},
	}}
	out := tl.SVG()
	els := parse(t, out)
	left, _, _, right := plotBox(t, els)
	spans := find(els, "rect", "span")
	require.Len(t, spans, 5)
	x := func(e *elem, a string) float64 { v, _ := strconv.ParseFloat(e.attr[a], 64); return v }
	for _, i := range []int{1, 2} {
		assert.InDelta(t, right, x(spans[i], "x")+x(spans[i], "width"), 0.11, "open-ended")
		assert.Contains(t, spans[i].tip(), "(open)")
	}
	assert.InDelta(t, left, x(spans[3], "x"), 0.11)
	assert.Equal(t, "1", spans[4].attr["width"], "a zero-length span still shows")
	assert.Equal(t, "worker 1 down: 10–20", spans[0].tip())
	inst := find(els, "path", "instant")
	require.Len(t, inst, 1)
	assert.Equal(t, "restart at 30", inst[0].title)
	assert.True(t, hasText(els, "idle"))
	assert.Equal(t, out, tl.SVG())

	fixed := parse(t, Timeline{XMin: 0, XMax: 100, Rows: []TimelineRow{{Label: "r", Spans: []Span{{From: 90, To: 200}, {From: 150, To: 160}}, Instants: []Instant{{At: 120}}}}}.SVG())
	assert.Len(t, find(fixed, "rect", "span"), 1, "outside the range")
	assert.Empty(t, find(fixed, "path", "instant"))
	assert.True(t, hasText(fixed, "100"))

	assert.True(t, hasText(parse(t, Timeline{}.SVG()), "no data"))
	assert.True(t, hasText(parse(t, Timeline{Rows: []TimelineRow{{Label: "empty"}}}.SVG()), "no data"))
	open := parse(t, Timeline{Rows: []TimelineRow{{Spans: []Span{{From: 5, To: math.NaN()}}}}}.SVG())
	assert.Len(t, find(open, "rect", "span"), 1)
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0, 119, []float64{0, 50, 100, 150}},
		{0.1, 0.35, []float64{0.1, 0.15, 0.2, 0.25, 0.3, 0.35}},
		{-3, 7, []float64{-4, -2, 0, 2, 4, 6, 8}},
		{995, 1005, []float64{994, 996, 998, 1000, 1002, 1004, 1006}},
	} {
		assert.Equal(t, tc.want, niceTicks(tc.lo, tc.hi), "%v..%v", tc.lo, tc.hi)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		scale := math.Pow10(r.IntN(30) - 15)
		lo := (r.Float64()*2 - 1) * scale * math.Pow10(r.IntN(3))
		hi := lo + r.Float64()*scale + scale*1e-6
		ts := niceTicks(lo, hi)
		require.True(t, len(ts) >= 3 && len(ts) <= 8, "%v..%v: %v", lo, hi, ts)
		require.LessOrEqual(t, ts[0], lo*(1+1e-9)+math.Abs(lo)*1e-9)
		require.GreaterOrEqual(t, ts[len(ts)-1], hi-math.Abs(hi)*1e-9)
		step := ts[1] - ts[0]
		m := step / math.Pow10(int(math.Floor(math.Log10(step)+1e-9)))
		require.True(t, math.Abs(m-1) < 1e-6 || math.Abs(m-2) < 1e-6 || math.Abs(m-5) < 1e-6, "step %v", step)
		for i := 2; i < len(ts); i++ {
			require.InDelta(t, step, ts[i]-ts[i-1], step*1e-6)
		}
	}
	assert.Equal(t, []float64{1, 1}, niceTicks(1, 1))
	assert.Len(t, niceTicks(-math.MaxFloat64, math.MaxFloat64), 2)
}

func TestAxes(t *testing.T) {
	a := newAxis(Log10, []float64{0, 0.003, 45}, false, false, nil)
	assert.Equal(t, -3.0, a.lo)
	assert.Equal(t, 2.0, a.hi)
	assert.Equal(t, []string{"0.001", "0.01", "0.1", "1", "10", "100"}, a.labels)
	assert.Equal(t, 0.0, a.pos(0), "≤ 0 sits at the bottom")
	assert.Equal(t, 0.0, a.pos(-1))

	few := newAxis(Log10, []float64{3, 40}, false, false, nil)
	assert.Equal(t, []string{"1", "2", "5", "10", "20", "50", "100"}, few.labels)

	many := newAxis(Log10, []float64{1e-12, 1e12}, false, false, nil)
	assert.LessOrEqual(t, len(many.ticks), 8)

	p := newAxis(Percentile, []float64{0, 99.99}, false, false, nil)
	assert.Equal(t, []string{"0", "90", "99", "99.9", "99.99"}, p.labels)
	assert.InDelta(t, 0.5, p.pos(99), 1e-9)
	assert.Equal(t, 1.0, p.pos(100))
	assert.Equal(t, 0.0, p.pos(-5))

	odd := newAxis(Scale(9), []float64{2, 3}, false, true, nil)
	assert.Equal(t, Linear, odd.scale)
	assert.Equal(t, 3.0, odd.hi)

	lin := newAxis(Linear, []float64{3, 3}, true, false, nil)
	assert.Equal(t, 0.0, lin.lo)
	exact := newAxis(Linear, []float64{0, 119}, false, true, nil)
	assert.Equal(t, []string{"0", "50", "100"}, exact.labels)
	assert.Equal(t, 119.0, exact.hi)
}

func TestCompact(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 1: "1", 0.25: "0.25", 0.001: "0.001", 999: "999", 999.7: "1k", 1000: "1k", 1500: "1.5k",
		2.5e6: "2.5M", 12345: "12.3k", -2500: "-2.5k", 3e9: "3G", 7e12: "7T", 12.25: "12.2", 100.4: "100",
		math.NaN(): "", math.Inf(1): "",
	} {
		assert.Equal(t, want, compact(v), "%v", v)
	}
}

func TestColor(t *testing.T) {
	assert.Equal(t, "#0072B2", Color(0))
	assert.Equal(t, Color(0), Color(8))
	assert.Equal(t, Color(7), Color(-1))
	seen := map[string]bool{}
	for i := range 8 {
		seen[Color(i)] = true
	}
	assert.Len(t, seen, 8)
}

func TestClip(t *testing.T) {
	assert.Equal(t, "abc", clip("abc", 3))
	assert.Equal(t, "<title>abcd</title>ab…", clip("abcd", 3))
	assert.Equal(t, "<title>abcd</title>", clip("abcd", 0))
	assert.Equal(t, "…", truncRunes("ééé", 1))
	assert.Equal(t, "a b", clean("a\nb"))
}

// TestRandomInputs throws awkward numbers at every chart: none may panic or
// emit invalid XML, NaN or Inf.
func TestRandomInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), -1, 1e-300, 1e300, math.MaxFloat64, 100, 99.9999999}
	num := func() float64 {
		if r.IntN(4) == 0 {
			return odd[r.IntN(len(odd))]
		}
		return (r.Float64() - 0.3) * math.Pow10(r.IntN(12)-6)
	}
	nums := func() []float64 {
		v := make([]float64, r.IntN(6))
		for i := range v {
			v[i] = num()
		}
		return v
	}
	for range 500 {
		sc := Scale(r.IntN(4))
		parse(t, Line{XScale: sc, YScale: Scale(r.IntN(4)), YZero: r.IntN(2) == 0, Width: r.IntN(700) - 50, Height: r.IntN(300) - 50,
			Series: []Series{{Name: "a", X: nums(), Y: nums(), Step: r.IntN(2) == 0}, {X: nums(), Y: nums()}},
			Bands:  []Band{{From: num(), To: num(), Label: "b"}}}.SVG())
		parse(t, Bars{Stacked: r.IntN(2) == 0, XScale: sc, Width: r.IntN(700) - 50, Bars: []Bar{
			{Label: "x", Segments: []Segment{{Name: "a", Value: num()}, {Value: num()}}}, {Segments: []Segment{{Name: "a", Value: num()}}}}}.SVG())
		parse(t, Heatmap{Columns: []string{"a", "b"}, Rows: []string{"r", "s"}, Width: r.IntN(300) - 50,
			Cells: [][]HeatCell{{{Value: num(), Safe: true}, {Value: num(), Text: "t"}}, {{Value: num(), Empty: r.IntN(2) == 0}}}}.SVG())
		parse(t, Timeline{XMin: num(), XMax: num(), Width: r.IntN(700) - 50, Rows: []TimelineRow{
			{Spans: []Span{{From: num(), To: num(), Text: "s"}}, Instants: []Instant{{At: num()}}}}}.SVG())
	}
}
