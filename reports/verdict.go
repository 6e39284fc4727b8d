package reports

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Verdict answers the report's question: which settings avoided leaked
// handles, and errors, under the scenario's workload and faults, and
// which of them to choose.
type Verdict struct {
	Ran      []*Cell // cells with at least one run that started
	Broken   []*Cell // cells with a run that could not start: judged on what did
	Unjudged []*Cell // cells none of whose runs started
	LeakFree []*Cell // no leaked handle in any repetition
	Clean    []*Cell // leak-free, no failed session, every expectation met, no finding, in every repetition
	// Recommended is the cheapest clean cell (see Sweep.pick for the
	// ties); if no cell is clean, the leak-free cell with every run
	// passing and the fewest failed sessions, then the cheapest; nil if
	// none is leak-free. Clean asks more than the scenario's expectations:
	// scenarios assert failures too (that compat still leaks), so meeting
	// them says nothing about whether a setting is safe.
	Recommended *Cell
	// Reference is the cell the verdict calls the defaults: the first
	// value of every axis (scenarios list the setting in use first).
	Reference *Cell
	Mixed     []*Cell // repetitions disagree
	// Reasons say it in plain words, most important first.
	Reasons []string

	why string // how Recommended was chosen among the clean cells
}

// nearP99 is how close two p99s must be to count as equal when choosing
// between equally cheap cells: closer than run-to-run noise on a small
// machine.
const nearP99 = 0.10

// pick chooses among clean cells: the cheapest; among equally cheap ones,
// those within nearP99 of the best median p99; among those, the one whose
// neighbours (the cells one setting away) fail fewest sessions, because
// it keeps working if that setting drifts; then the best p99. It says
// how it chose.
func (s *Sweep) pick(ran, clean []*Cell, costs costTable) (*Cell, string) {
	p99 := func(c *Cell) float64 { return c.Metric("p99_ms").Median }
	minCost := slices.Min(costs.of(clean))
	var cheap []*Cell
	for _, c := range clean {
		if costs.cost(c) == minCost {
			cheap = append(cheap, c)
		}
	}
	why := "the cheapest of those (smallest limits and shortest timeouts)"
	if len(cheap) == 1 {
		return cheap[0], why
	}
	best := slices.MinFunc(cheap, func(a, b *Cell) int { return cmp.Compare(p99(a), p99(b)) })
	var near []*Cell
	for _, c := range cheap {
		if p99(c) <= p99(best)*(1+nearP99) {
			near = append(near, c)
		}
	}
	if len(near) == 1 {
		return best, why + fmt.Sprintf(", with the best median p99 of the %d equally cheap", len(cheap))
	}
	around := func(c *Cell) float64 { return s.neighbourErrors(ran, c) }
	chosen := slices.MinFunc(near, func(a, b *Cell) int {
		return cmp.Or(cmp.Compare(around(a), around(b)), cmp.Compare(p99(a), p99(b)), cmp.Compare(a.Index, b.Index))
	})
	return chosen, why + fmt.Sprintf("; of the %d equally cheap with p99 within %.0f %% of each other, the one whose neighbours (one setting changed) fail fewest sessions: %s on average, so it holds up best if a setting drifts",
		len(near), nearP99*100, Percent(around(chosen)))
}

// neighbourErrors is the mean median error rate of the cells that differ
// from c in exactly one axis value (0 if it has none).
func (s *Sweep) neighbourErrors(ran []*Cell, c *Cell) float64 {
	sum, n := 0.0, 0
	for _, o := range ran {
		if o == c || len(o.Values) != len(c.Values) {
			continue
		}
		diff := 0
		for i := range o.Values {
			if o.Values[i].Value != c.Values[i].Value {
				diff++
			}
		}
		if e := o.Metric("error_rate").Median; diff == 1 && !math.IsNaN(e) {
			sum += e
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Cost ranks how much a cell's settings hold: for every setting whose
// value is a number or a duration and differs between the cells that
// ran, the value's rank among that setting's values, from 0 (smallest)
// to 1 (largest), summed. Larger limits keep more connections and
// descriptors; longer timeouts hold them longer. Settings that are not
// numbers (a policy) cost nothing.
func (s *Sweep) Cost(c *Cell) float64 { return s.costs().cost(c) }

// costTable is, by setting, the sorted distinct numeric values the cells
// that ran gave it: what Cost ranks a value among. Verdict builds it once
// rather than on every comparison of two cells.
type costTable map[string][]float64

func (s *Sweep) costs() costTable {
	t := costTable{}
	for _, o := range s.Ran() {
		for _, set := range o.Settings {
			if v, ok := number(set.Value); ok && !slices.Contains(t[set.Key], v) {
				t[set.Key] = append(t[set.Key], v)
			}
		}
	}
	for _, vs := range t {
		sort.Float64s(vs)
	}
	return t
}

func (t costTable) cost(c *Cell) float64 {
	cost := 0.0
	for _, set := range c.Settings {
		vs := t[set.Key]
		v, ok := number(set.Value)
		if !ok || len(vs) < 2 {
			continue
		}
		cost += float64(slices.Index(vs, v)) / float64(len(vs)-1)
	}
	return cost
}

func (t costTable) of(cells []*Cell) []float64 {
	out := make([]float64, len(cells))
	for i, c := range cells {
		out[i] = t.cost(c)
	}
	return out
}

// number reads a canonical setting value as a number: an integer, or a
// duration in seconds.
func number(v string) (float64, bool) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return n, true
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d.Seconds(), true
	}
	return 0, false
}

// Verdict works out the verdict from the cells that ran.
func (s *Sweep) Verdict() Verdict {
	var v Verdict
	for _, c := range s.Ran() {
		switch started := c.Started(); {
		case started == 0:
			v.Unjudged = append(v.Unjudged, c)
			continue
		case started < len(c.Runs):
			v.Broken = append(v.Broken, c)
		}
		v.Ran = append(v.Ran, c)
	}
	if len(s.Cells) > 0 && s.Cells[0].Started() > 0 {
		v.Reference = s.Cells[0]
	}
	passing := func(c *Cell) bool { return c.Passed() == len(c.Runs) }
	var leakFreePassing []*Cell
	for _, c := range v.Ran {
		if c.LeakFree() {
			v.LeakFree = append(v.LeakFree, c)
			if passing(c) {
				leakFreePassing = append(leakFreePassing, c)
			}
		}
		if c.Clean() {
			v.Clean = append(v.Clean, c)
		}
		if c.Mixed() {
			v.Mixed = append(v.Mixed, c)
		}
	}
	costs := s.costs()
	p99 := func(c *Cell) float64 { return c.Metric("p99_ms").Median }
	errs := func(c *Cell) float64 { return c.Metric("error_rate").Median }
	byCost := func(a, b *Cell) int {
		return cmp.Or(cmp.Compare(costs.cost(a), costs.cost(b)), cmp.Compare(p99(a), p99(b)), cmp.Compare(errs(a), errs(b)), cmp.Compare(a.Index, b.Index))
	}
	switch {
	case len(v.Clean) > 0:
		v.Recommended, v.why = s.pick(v.Ran, v.Clean, costs)
	case len(leakFreePassing) > 0:
		v.Recommended = slices.MinFunc(leakFreePassing, func(a, b *Cell) int {
			return cmp.Or(cmp.Compare(errs(a), errs(b)), byCost(a, b))
		})
	}
	v.Reasons = s.reasons(v)
	return v
}

func (s *Sweep) reasons(v Verdict) []string {
	var out []string
	say := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if len(v.Unjudged) > 0 {
		say("%d cell(s) could not start any run and are not judged: %s.", len(v.Unjudged), labels(v.Unjudged))
	}
	if len(v.Broken) > 0 {
		say("Some runs could not start in %s: those cells count as neither leak-free nor clean; see their detail.", labels(v.Broken))
	}
	if len(v.Ran) == 0 {
		return append(out, "No cell has run yet: there is nothing to judge.")
	}
	switch {
	case len(v.LeakFree) == 0:
		say("No setting avoided leaked handles: every one of the %d cells run leaked at least one handle in some repetition.", len(v.Ran))
	case len(v.LeakFree) == len(v.Ran):
		say("No setting leaked a handle: all %d cells run were free of dispatch timeouts.", len(v.Ran))
	default:
		say("%d of %d settings avoided leaked handles in every repetition: %s.", len(v.LeakFree), len(v.Ran), labels(v.LeakFree))
	}
	if key, good, bad := s.decidedBy(v.Ran, (*Cell).LeakFree); key != "" {
		say("Whether handles leak depends on %s alone: with %s no cell leaked, with %s every cell did, whatever the other settings.", key, good, bad)
	}
	switch {
	case len(v.Clean) == 0 && len(v.LeakFree) > 0:
		say("None of them also served every session and met every expectation.")
	case len(v.Clean) > 0:
		say("%d of them also failed no session and met every expectation: %s.", len(v.Clean), labels(v.Clean))
		if key, good, bad := s.decidedBy(v.Ran, (*Cell).Served); key != "" {
			say("Whether every session is served depends on %s alone: with %s every cell served them all, with %s every cell failed some, whatever the other settings.", key, good, bad)
		}
	}
	if c := v.Recommended; c != nil {
		if len(v.Clean) > 0 {
			say("Recommended: %s, %s: %s.", c.Label, v.why, c.Brief())
		} else {
			say("Recommended, for want of a clean cell: %s, the leak-free cell with the fewest errors that met every expectation: %s. %s", c.Label, c.Brief(), c.Failures())
		}
	} else {
		say("Nothing can be recommended: no cell was both free of leaked handles and met every expectation.")
	}
	if r := v.Reference; r != nil && r != v.Recommended {
		say("The defaults (%s, the first value of every axis): %s. %s", r.Label, r.Brief(), r.Failures())
	}
	for _, c := range v.LeakFree {
		if !c.Clean() && c != v.Recommended && c != v.Reference {
			if f := c.Failures(); f != "" {
				say("%s leaked nothing but still failed sessions: %s", c.Label, f)
			}
		}
	}
	if len(v.Mixed) > 0 {
		say("Repetitions disagree in %s: treat those cells as uncertain and run more repetitions (--repetitions N) before relying on them.", labels(v.Mixed))
	}
	return out
}

// decidedBy names the first axis whose value alone decides ok across the
// cells, with its values on each side ("a or b"), or "" if no single axis
// does.
func (s *Sweep) decidedBy(cells []*Cell, ok func(*Cell) bool) (key, good, bad string) {
	if len(cells) < 2 || s.Manifest == nil {
		return "", "", ""
	}
	for i, ax := range s.Manifest.Axes {
		if len(ax.Values) < 2 {
			continue
		}
		good, bad, decides := []string{}, []string{}, true
		for _, val := range ax.Values {
			var yes, no int
			for _, c := range cells {
				if i < len(c.Values) && c.Values[i].Value == val {
					if ok(c) {
						yes++
					} else {
						no++
					}
				}
			}
			switch {
			case yes > 0 && no > 0:
				decides = false
			case yes > 0:
				good = append(good, val)
			case no > 0:
				bad = append(bad, val)
			}
		}
		if decides && len(good) > 0 && len(bad) > 0 {
			return ax.Key, strings.Join(good, " or "), strings.Join(bad, " or ")
		}
	}
	return "", "", ""
}

// Brief is the cell's headline numbers: error rate, leaked handles and
// p99, as medians over its repetitions.
func (c *Cell) Brief() string {
	if len(c.Runs) == 0 {
		return "not run"
	}
	b := fmt.Sprintf("%s of sessions failed, %s leaked, p99 %s",
		Percent(c.Metric("error_rate").Median), Count(c.Metric("leaked_handles").Median, "handle"), Millis(c.Metric("p99_ms").Median))
	if len(c.Runs) > 1 {
		b += fmt.Sprintf(" (medians of %d repetitions)", len(c.Runs))
	}
	return b
}

// Failures says what failed in the cell, in words: the normal clients'
// outcome classes other than ok, and what the daemon's ledger says caused
// them. Empty when nothing failed.
func (c *Cell) Failures() string {
	type kv struct {
		k string
		n int64
	}
	var classes []kv
	for k, n := range c.Outcomes() {
		if k != "ok" && n > 0 {
			classes = append(classes, kv{k, n})
		}
	}
	if len(classes) == 0 {
		return ""
	}
	slices.SortFunc(classes, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.k, b.k)) })
	parts := make([]string, 0, len(classes))
	for _, x := range classes {
		parts = append(parts, fmt.Sprintf("%d %s", x.n, x.k))
	}
	out := "Clients saw " + strings.Join(parts, ", ")
	if len(c.Runs) > 1 {
		out += fmt.Sprintf(" over %d repetitions", len(c.Runs))
	}
	var causes []string
	for _, m := range []struct{ name, words string }{
		{"queue_full", "turned away by a full route queue"},
		{"queue_timeout", "expired in a route queue"},
		{"dispatch_error", "aborted in a queue or a failed hand-off"},
		{"evictions", "workers evicted"},
		{"receive_timeout", "cut at receive_timeout"},
		{"no_route", "for no registered route"},
		{"listen_overflows", "kernel listen-queue overflows"},
	} {
		if st := c.Metric(m.name); st.Median > 0 {
			causes = append(causes, fmt.Sprintf("%s %s", Number(st.Median), m.words))
		}
	}
	if len(causes) > 0 {
		out += "; the daemon counted (median per run) " + strings.Join(causes, ", ")
	}
	return out + "."
}

func labels(cells []*Cell) string {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = c.Label
	}
	return strings.Join(parts, "; ")
}

// Percent formats a rate as a percentage for people: "0 %", "0.8 %",
// "65 %".
func Percent(r float64) string {
	switch {
	case math.IsNaN(r):
		return "–"
	case r == 0:
		return "0 %"
	case r < 0.001: // one in thousands must not read as none
		return "< 0.1 %"
	case r < 0.1:
		return strconv.FormatFloat(r*100, 'f', 1, 64) + " %"
	}
	return strconv.FormatFloat(r*100, 'f', 0, 64) + " %"
}

// Number prints a value for people to three significant digits, without
// an exponent or trailing zeros; a whole number (a count) prints whole:
// "67", "1809", "2.5", "40.4", "0.0448". NaN, a median of nothing, is "–".
func Number(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	digits := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Millis formats milliseconds for people, to three significant digits
// (Number): "850 µs", "12.3 ms", "10 ms", "2.06 s".
func Millis(ms float64) string { return millis(ms, " ") }

// MillisCompact is Millis without the space, for chart ticks and tables:
// "850µs", "12.3ms", "2.06s".
func MillisCompact(ms float64) string { return millis(ms, "") }

func millis(ms float64, sep string) string {
	switch a := math.Abs(ms); {
	case math.IsNaN(ms):
		return "–"
	case a == 0:
		return "0" + sep + "ms"
	case a < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + sep + "µs"
	case a < 1000:
		return Number(ms) + sep + "ms"
	}
	return Number(ms/1000) + sep + "s"
}

// Plural counts something: "1 cell", "4 cells", "0 cells", "2.5 handles"
// (Number); many is the plural form.
func Plural[N int | int64 | float64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return Number(float64(n)) + " " + many
}

// Count formats a count of a noun: "no handle", "1 handle", "2.5 handles".
func Count(n float64, noun string) string {
	if n == 0 {
		return "no " + noun
	}
	return Plural(n, noun, noun+"s")
}
