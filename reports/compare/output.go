package compare

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portshare/portshare/reports"
)

// Row is one line of the comparison's table: a metric, an expectation,
// or a cell's state (not run, not compared, runs that could not start).
type Row struct {
	Cell, Item                        string
	Base, New, Change, Limit, Verdict string
	Fail                              bool   // fails the gate
	Warn                              bool   // a warning: failed as in the baseline, does not fail the gate
	Detail                            string // why it failed or warns, in a sentence
}

// Header names the table's columns.
var Header = Row{Cell: "cell", Item: "metric / assertion", Base: "baseline", New: "new", Change: "change", Limit: "limit", Verdict: "verdict"}

// warning is the verdict of a row that warns.
const warning = "warning (as in baseline)"

// Rows is the comparison as a table, cell by cell: the cell's state if
// it was not compared, its metrics, its expectations, then its runs that
// could not start.
func (r *Result) Rows() []Row {
	var rows []Row
	for _, c := range r.Cells {
		switch c.Status {
		case NotRun:
			d := "the baseline ran this cell; the new sweep did not"
			if len(c.Errors) > 0 {
				d = "no repetition of the new sweep started: " + strings.Join(c.Errors, "; ")
			}
			rows = append(rows, Row{Cell: c.Label, Item: "cell ran", Base: reports.Plural(len(c.Base.Runs), "run", "runs"), New: "none", Verdict: "NOT RUN", Fail: true, Detail: d})
			continue
		case OnlyInNew:
			row := Row{Cell: c.Label, Item: "cell ran", Base: "none", New: reports.Plural(len(c.New.Runs), "run", "runs"), Verdict: "not compared", Detail: "not in the baseline: only its expectations are checked"}
			if c.Base != nil {
				row.Base, row.Detail = "none started", "no repetition of the baseline started: only its expectations are checked"
			}
			rows = append(rows, row)
		}
		for _, m := range c.Metrics {
			rows = append(rows, Row{
				Cell: c.Label, Item: m.Metric,
				Base: stat(m.Metric, m.Base), New: stat(m.Metric, m.New),
				Change: change(m), Limit: limit(m), Verdict: verdict(m),
				Fail: m.Verdict == Regressed, Detail: detail(m),
			})
		}
		for _, ch := range c.Checks {
			row := Row{Cell: c.Label, Item: ch.Name(), Base: "-", New: fmt.Sprintf("%d/%d passed", ch.Passed, ch.Runs), Verdict: "ok"}
			if ch.InBase {
				row.Base = fmt.Sprintf("%d/%d passed", ch.BasePassed, ch.BaseRuns)
			}
			switch {
			case ch.Fails():
				row.Verdict, row.Fail, row.Detail = "FAIL", true, checkDetail(ch)
				if ch.BaseFailed {
					row.Verdict = "FAIL (more often than baseline)"
				}
			case ch.AsInBase():
				row.Verdict, row.Warn, row.Detail = warning, true, checkWarning(ch)
			}
			rows = append(rows, row)
		}
		fail := c.ErrorsFail()
		for _, e := range c.Errors {
			row := Row{Cell: c.Label, Item: "repetition started", New: "error", Verdict: "FAIL", Fail: true, Detail: e}
			if !fail {
				row.Verdict, row.Fail, row.Warn = warning, false, true
				row.Detail = fmt.Sprintf("%s; %s", e, errorsWarning(c))
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// errorsWarning is the warning for a cell's repetitions that could not
// start, no more often than the baseline's.
func errorsWarning(c *CellResult) string {
	return asInBase("could not start", len(c.Errors), len(c.New.Runs), c.BaseErrors, len(c.Base.Runs))
}

// WriteText writes the table for a terminal or a CI log: a heading, the
// notes, the aligned table (each cell's label on its first row), one
// line per failure naming the cell (FAIL), one per warning (WARN), and
// the summary. It returns the writer's first error.
func (r *Result) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "portshare compare: %s\n", r.Scenario)
	fmt.Fprintf(ew, "baseline: %s\n", describe(r.Baseline.Dir, r.Baseline.Manifest.Version, r.Baseline.Manifest.Machine.Host, r.Baseline.Manifest.Repetitions))
	fmt.Fprintf(ew, "new:      %s\n", describe(r.New.Dir, r.New.Manifest.Version, r.New.Manifest.Machine.Host, r.New.Manifest.Repetitions))
	var changed []string
	for _, mt := range r.Tolerances {
		if mt.Source != FromDefault {
			changed = append(changed, fmt.Sprintf("%s=%s (%s)", mt.Metric, mt.Tolerance.Text, mt.Source))
		}
	}
	if len(changed) > 0 {
		fmt.Fprintf(ew, "tolerances: %s; the defaults for the rest\n", strings.Join(changed, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(ew, "note: %s\n", n)
	}
	fmt.Fprintln(ew)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	rows := r.Rows()
	line := func(row Row) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Cell, row.Item, row.Base, row.New, row.Change, row.Limit, row.Verdict)
	}
	line(Header)
	prev := ""
	for _, row := range rows {
		shown := row
		if row.Cell == prev {
			shown.Cell = ""
		}
		prev = row.Cell
		line(shown)
	}
	tw.Flush()
	fmt.Fprintln(ew)
	for _, row := range rows {
		if row.Fail {
			fmt.Fprintf(ew, "FAIL %s: %s: %s\n", row.Cell, row.Item, oneLine(row.Detail))
		}
	}
	for _, row := range rows {
		if row.Warn {
			fmt.Fprintf(ew, "WARN %s: %s: %s\n", row.Cell, row.Item, oneLine(row.Detail))
		}
	}
	fmt.Fprintln(ew, r.Summary())
	return ew.err
}

func describe(dir, version, host string, reps int) string {
	return fmt.Sprintf("%s (portshare %s on %s, %s per cell)", dir, version, host, reports.Plural(reps, "repetition", "repetitions"))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// errWriter keeps the first write error, so that the writers can print
// freely and report it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// JUnit XML: the subset CI systems read (Jenkins, GitLab, GitHub
// actions that annotate from it).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr,omitempty"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// junitCases are the comparison's test cases, by cell: "cell ran" (failed
// for a baseline cell the new sweep did not run or repetitions that could
// not start, more often than in the baseline; skipped for a cell only in
// the new sweep), one per gated metric, one per expectation. A case's
// system-out carries what the table says of it: a metric's numbers and
// verdict, a warning.
func (r *Result) junitCases() []junitCase {
	var cases []junitCase
	for _, c := range r.Cells {
		ran := junitCase{Classname: c.Label, Name: "cell ran", Time: seconds(c.Time)}
		switch {
		case c.Status == NotRun:
			msg := "cell not run: the baseline ran it, the new sweep did not"
			ran.Failure = &junitFailure{Message: msg, Type: "not run", Text: strings.Join(append([]string{msg}, c.Errors...), "\n")}
		case c.ErrorsFail():
			ran.Failure = &junitFailure{Message: reports.Plural(len(c.Errors), "repetition", "repetitions") + " could not start", Type: "run error", Text: strings.Join(c.Errors, "\n")}
		case len(c.Errors) > 0:
			ran.SystemOut = "warning: " + errorsWarning(c) + "\n" + strings.Join(c.Errors, "\n")
		}
		if c.Status == OnlyInNew && ran.Failure == nil {
			ran.Skipped = &junitSkipped{Message: "not in the baseline: not compared"}
		}
		cases = append(cases, ran)
		for _, m := range c.Metrics {
			if !m.Gated() {
				continue
			}
			tc := junitCase{Classname: c.Label, Name: m.Metric}
			tc.SystemOut = fmt.Sprintf("baseline %s, new %s, change %s, limit %s: %s", stat(m.Metric, m.Base), stat(m.Metric, m.New), change(m), limit(m), verdict(m))
			if m.Note != "" {
				tc.SystemOut += "; " + m.Note
			}
			if m.Verdict == Regressed {
				tc.Failure = &junitFailure{Message: m.Metric + " regressed: " + detail(m), Type: "regression", Text: tc.SystemOut}
			}
			cases = append(cases, tc)
		}
		for _, ch := range c.Checks {
			tc := junitCase{Classname: c.Label, Name: ch.Name()}
			switch {
			case ch.Fails():
				tc.Failure = &junitFailure{Message: ch.Expect + ": " + checkDetail(ch), Type: "expectation", Text: checkDetail(ch)}
			case ch.AsInBase():
				tc.SystemOut = "warning: " + checkWarning(ch)
			}
			cases = append(cases, tc)
		}
	}
	return cases
}

// WriteJUnit writes the comparison as JUnit XML: one testsuite named for
// the scenario, a testcase per cell × check with the cell's label as its
// classname. Characters XML cannot carry become U+FFFD (encoding/xml's
// escaping). It returns the writer's first error.
func (r *Result) WriteJUnit(w io.Writer) error {
	cases := r.junitCases()
	suite := junitSuite{Name: r.Scenario, Tests: len(cases), Cases: cases, Time: seconds(r.wallClock())}
	for _, c := range cases {
		switch {
		case c.Failure != nil:
			suite.Failures++
		case c.Skipped != nil:
			suite.Skipped++
		}
	}
	suite.Properties = []junitProperty{
		{"baseline", r.Baseline.Dir}, {"baseline.version", r.Baseline.Manifest.Version},
		{"new", r.New.Dir}, {"new.version", r.New.Manifest.Version},
	}
	var out strings.Builder
	for _, n := range r.Notes {
		out.WriteString("note: " + n + "\n")
	}
	out.WriteString(r.Summary() + "\n")
	suite.SystemOut = out.String()
	doc := junitSuites{Name: "portshare compare", Tests: suite.Tests, Failures: suite.Failures, Time: suite.Time, Suites: []junitSuite{suite}}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, xml.Header+string(b)+"\n")
	return err
}

// wallClock is the new sweep's duration: its manifest's, or its runs'
// summed if the manifest has none (a sweep still running, or interrupted).
func (r *Result) wallClock() time.Duration {
	m := r.New.Manifest
	if !m.Started.IsZero() && m.Finished.After(m.Started) {
		return m.Finished.Sub(m.Started)
	}
	var d time.Duration
	for _, c := range r.Cells {
		d += c.Time
	}
	return d
}

func seconds(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("%.3f", d.Seconds())
}

// WriteMarkdown writes a summary for a pull request comment: a headline
// with ✅ or ❌ and the counts, the notes, a table of the failures, a list
// of the warnings, then every row inside <details>. Text from the inputs
// (labels, notes, hosts, errors) cannot add links, images or HTML. It returns the writer's first error.
func (r *Result) WriteMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	mark := "✅"
	if r.Failed() {
		mark = "❌"
	}
	fmt.Fprintf(ew, "### %s %s: %s\n\n", mark, mdText(r.Scenario), mdText(r.Summary()))
	fmt.Fprintf(ew, "Baseline: portshare %s on %s; new: portshare %s on %s.\n\n",
		mdCode(r.Baseline.Manifest.Version), mdText(r.Baseline.Manifest.Machine.Host), mdCode(r.New.Manifest.Version), mdText(r.New.Manifest.Machine.Host))
	for _, n := range r.Notes {
		fmt.Fprintf(ew, "> **Note:** %s\n\n", mdText(n))
	}
	rows := r.Rows()
	var failed []Row
	for _, row := range rows {
		if row.Fail {
			failed = append(failed, row)
		}
	}
	if len(failed) > 0 {
		mdTable(ew, failed, false)
		fmt.Fprintln(ew)
	}
	for _, row := range rows {
		if row.Warn {
			fmt.Fprintf(ew, "- ⚠️ %s: %s: %s\n", mdCode(row.Cell), mdText(row.Item), mdText(row.Detail))
		}
	}
	if slices.ContainsFunc(rows, func(row Row) bool { return row.Warn }) {
		fmt.Fprintln(ew)
	}
	fmt.Fprintf(ew, "<details><summary>Every comparison: %s in %s</summary>\n\n", reports.Plural(len(rows), "row", "rows"), reports.Plural(len(r.Cells), "cell", "cells"))
	mdTable(ew, rows, true)
	fmt.Fprint(ew, "\n</details>\n")
	return ew.err
}

// mdTable writes rows as a table; grouped names each cell on its first
// row only.
func mdTable(w io.Writer, rows []Row, grouped bool) {
	line := func(cells ...string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	h := Header
	line(mdText(h.Cell), mdText(h.Item), mdText(h.Base), mdText(h.New), mdText(h.Change), mdText(h.Limit), mdText(h.Verdict))
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for i, row := range rows {
		if grouped && i > 0 && rows[i-1].Cell == row.Cell {
			row.Cell = ""
		}
		verdict := mdText(row.Verdict)
		if row.Fail {
			verdict = "**" + verdict + "**"
		}
		line(mdCode(row.Cell), mdText(row.Item), mdText(row.Base), mdText(row.New), mdText(row.Change), mdText(row.Limit), verdict)
	}
}

// mdText escapes text for a Markdown table cell or list item: HTML's
// specials (a "<" in "p99_ms < 3000" could open a tag), the column
// separator, line breaks, which would end the row, and the punctuation of
// links, images, emphasis and code spans, so that a --set value or an
// error like "![x](https://host/p.png)" stays text instead of becoming a
// remote image in a pull request comment.
func mdText(s string) string { return mdEscaper.Replace(s) }

var mdEscaper = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", " ", "\n", " ",
	`\`, `\\`, "|", `\|`, "*", `\*`, "`", "\\`",
	"[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`, "!", `\!`,
)

// mdCode is s as inline code in a table cell; GitHub takes \| for a pipe
// even there. Nothing inside a code span is a link or an image.
func mdCode(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.NewReplacer("`", "'", "|", `\|`, "\r", " ", "\n", " ").Replace(s) + "`"
}
