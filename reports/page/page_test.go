package page

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/reports"
)

// render writes the report of the smsvchost-defaults fixture (ten cells,
// one repetition each and two of cell 0).
func render(t *testing.T) string {
	t.Helper()
	s, err := reports.Load("../testdata/smsvchost-defaults")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, s))
	return buf.String()
}

// voids are the HTML elements that take no end tag.
var voids = []string{"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

func TestReportIsWellFormedHTML(t *testing.T) {
	page := render(t)
	require.True(t, strings.HasPrefix(page, "<!DOCTYPE html>"))
	// Every element is closed, in order: html.Parse would repair any
	// page, so check the tags themselves.
	z := html.NewTokenizer(strings.NewReader(page))
	var stack []string
	inSVG := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			require.ErrorIs(t, z.Err(), io.EOF)
			break
		}
		name, _ := z.TagName()
		tag := string(name)
		switch tt {
		case html.StartTagToken:
			if tag == "svg" {
				inSVG++
			}
			if !slices.Contains(voids, tag) {
				stack = append(stack, tag)
			}
		case html.EndTagToken:
			require.NotEmpty(t, stack, "</%s> closes nothing", tag)
			require.Equal(t, stack[len(stack)-1], tag, "</%s> closes <%s>", tag, stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			if tag == "svg" {
				inSVG--
			}
		case html.SelfClosingTagToken:
			require.True(t, inSVG > 0 || slices.Contains(voids, tag), "<%s/> outside SVG", tag)
		}
	}
	assert.Empty(t, stack, "unclosed elements")
}

func TestReportChartsAreValidSVG(t *testing.T) {
	page := render(t)
	svgs := regexp.MustCompile(`(?s)<svg.*?</svg>`).FindAllString(page, -1)
	// Three heatmaps for the one pair of axes, six charts per run (11 runs).
	require.GreaterOrEqual(t, len(svgs), 3+6*11)
	for _, svg := range svgs {
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			require.NoError(t, err, "%.300s", svg)
		}
	}
	for _, title := range []string{"Session latency", "Sessions ended per second", "Daemon state", "Fault events", "Latency by percentile", "Timing breakdown", "Leaked handles", "Error rate", "p99 latency"} {
		assert.True(t, strings.Contains(page, "<title>"+title), "no chart %q", title)
	}
}

func TestReportNeedsNothingFromOutside(t *testing.T) {
	page := render(t)
	for _, m := range regexp.MustCompile(`(?i)(?:src|href|action|xlink:href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1) {
		assert.True(t, strings.HasPrefix(m[1], "#"), "a reference outside the page: %s", m[0])
	}
	for _, m := range regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<]*`).FindAllString(page, -1) {
		assert.Equal(t, "http://www.w3.org/2000/svg", m, "a URL in the page")
	}
	assert.NotContains(t, page, "@import")
	assert.NotContains(t, page, "url(")
	assert.NotContains(t, page, "<link")
	assert.NotContains(t, page, "<script src")
	assert.Less(t, len(page), 2<<20, "the page must stay under 2 MiB")
}

func TestReportVerdictComesFirst(t *testing.T) {
	page := render(t)
	verdict := strings.Index(page, `id="verdict"`)
	matrix := strings.Index(page, `id="matrix"`)
	require.True(t, verdict > 0 && matrix > verdict)
	first := page[verdict:matrix]
	for _, re := range []string{
		`class="big"><a href="#cell-9">dispatch_failure_policy=reclaim remedy=remedy-and-3min</a><`,
		`class="settings">dispatch_failure_policy reclaim; remedy remedy-and-3min = listen_backlog 100, max_pending_accepts 10, max_pending_connections 1000, dispatch_timeout 3s<`,
	} {
		assert.True(t, regexp.MustCompile(re).MatchString(first), "the verdict lacks %s", re)
	}
	for _, s := range []string{"Recommended setting", "Avoided leaked handles", "4 of 10", "The defaults", "Whether handles leak depends on remedy alone"} {
		assert.True(t, strings.Contains(first, s), "the verdict lacks %q", s)
	}
}

// The verdict's counts are of the cells judged, as its reasons say: a
// cell none of whose runs started is not among them.
func TestReportCountsTheCellsJudged(t *testing.T) {
	s, err := reports.Load("../testdata/smsvchost-defaults")
	require.NoError(t, err)
	for _, c := range []*reports.Cell{s.Cells[0], s.Cells[9]} {
		for _, r := range c.Runs {
			r.Error, r.Metrics, r.Pass = "daemon did not start: address in use", nil, false
		}
	}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, s))
	page := buf.String()
	assert.Contains(t, page, "3 of 8 settings avoided leaked handles")
	assert.Contains(t, page, `<p class="count">3 of 8</p>`)
	assert.Contains(t, page, `<p class="count">1 of 8</p>`)
	assert.Contains(t, page, "10 of 10 cells run")
}

func TestReportShowsEveryCellAndTheEnvironment(t *testing.T) {
	page := render(t)
	has := func(s string) { t.Helper(); assert.True(t, strings.Contains(page, s), "the page lacks %q", s) }
	for i := range 10 {
		has(fmt.Sprintf(`id="cell-%d"`, i))
	}
	assert.Equal(t, 11, strings.Count(page, `<details class="run"`))
	has("net.core.somaxconn")
	has("name: smsvchost-defaults")
	has("ListenOverflows")
	has(`<title>stall</title>`) // the fault window, shaded
	has(`<title>leak</title>`)  // a leaked handle, marked
	has("In effect throughout: slow-accept:delay=15ms,dist=exp on worker-orders-1, worker-orders-2")
	has(`title="by repetition: 0.663, 0.645"`) // cell 0's two error rates, behind its median
}

func TestUnseeded(t *testing.T) {
	assert.Equal(t, "slow-accept:delay=15ms,dist=exp", unseeded("slow-accept:delay=15ms,dist=exp,seed=2"))
	assert.Equal(t, "silent", unseeded("silent"))
	assert.Equal(t, "crash", unseeded("crash:seed=1"))
}

func TestSpectrumPointsStopWhereTheDataDoes(t *testing.T) {
	ps := spectrumPoints(1000)
	assert.Equal(t, 0.0, ps[0])
	assert.InDelta(t, 99.9, ps[len(ps)-1], 1e-9)
	assert.Len(t, spectrumPoints(5), 9) // 0…80: no nines from five sessions
}

func TestTimedWindows(t *testing.T) {
	assert.True(t, window{Fault: "stall:at=2s,for=1500ms", Kind: faults.Worker}.timed())
	assert.True(t, window{Fault: "crash:after=10", Kind: faults.Worker}.timed())
	assert.True(t, window{Fault: "silent:for=2s", Kind: faults.Client}.timed())
	assert.True(t, window{Fault: "pause", Kind: faults.Daemon}.timed())
	assert.False(t, window{Fault: "slow-accept:delay=15ms,dist=exp", Kind: faults.Worker}.timed())
	assert.False(t, window{Fault: "dribble:interval=50ms", Kind: faults.Client}.timed())
	assert.False(t, window{Fault: "silent", Kind: faults.Client}.timed())
	// A spec this version no longer reads is listed in words, whatever
	// its keys look like.
	assert.False(t, window{Fault: "dribble:interval=50ms,format=x,at=1s", Kind: faults.Client}.timed())
	assert.False(t, window{Fault: "stall:at=2s,for=1500ms", Kind: faults.Client}.timed())
}
