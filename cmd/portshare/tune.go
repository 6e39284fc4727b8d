package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
	"github.com/portshare/portshare/scenarios/runner"
)

func newTuneCmd() *cobra.Command {
	var (
		out         string
		sets        []string
		cells       []int
		repetitions int
		list, check bool
		seed        uint64
	)
	cmd := &cobra.Command{
		Use:   "tune [SCENARIO] [--out DIR] [--set KEY=VALUE…] [--cell N…] [--repetitions N] [--seed N] [--check]",
		Short: "Run a tuning scenario: sweep daemon settings under a workload and faults",
		Long: `Run a scenario (a file, or the name of a built-in one; default: ` + scenarios.Default + `)
against real processes: for every cell of its sweep and every repetition, a
fresh daemon with the cell's settings, the scenario's workers and loads on a
free port, its daemon and network faults on schedule. Each run is checked
(the ledger balances, the daemon's descriptors return to their baseline)
and its expectations evaluated; results go to --out as one file per cell ×
repetition plus manifest.json (scenarios/results/FORMAT.md).

--set KEY=VALUE fixes a setting for every cell; --set KEY=V1,V2 sweeps it
instead of what the file says (a preset axis takes preset names). --cell N
runs only cell N (repeatable, numbered from 0), so a sweep can be spread over
machines and the run files copied into one directory afterwards
(docs/DISTRIBUTED.md). --check exits 1 if an expectation failed or a check
found something (for CI). Random draws (fault delays, Poisson arrivals) are
the same in every cell, differ between repetitions, and repeat from one
sweep to the next unless --seed changes them. Ctrl-C stops the run in
progress, tears it down and keeps what was done.

Built-in scenarios: ` + strings.Join(scenarios.Names(), ", ") + `
(scenarios/README.md describes the file format.)`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one SCENARIO, got %q (see '%s --help')", c.CommandPath(), args, c.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				return listScenarios(cmd.OutOrStdout())
			}
			name := scenarios.Default
			if len(args) == 1 {
				name = args[0]
			}
			s, err := scenarios.Open(name)
			if err != nil {
				return usageError{err}
			}
			for _, kv := range sets {
				if err := s.Set(kv); err != nil {
					return usageError{err}
				}
			}
			if cmd.Flags().Changed("repetitions") {
				if repetitions < 1 || repetitions > scenarios.MaxRepetitions {
					return usagef("--repetitions must be from 1 to %d, got %d", scenarios.MaxRepetitions, repetitions)
				}
				s.Repetitions = repetitions
			}
			if out == "" {
				out = filepath.Join("tune-results", s.Name+"-"+time.Now().Format("20060102-150405"))
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			raiseNOFILE()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			// "tune | head" must still tear its runs down.
			signal.Ignore(syscall.SIGPIPE)
			defer signal.Reset(syscall.SIGPIPE)
			return runTune(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), runner.Runner{Exe: self, Out: out, Version: buildVersion(), Seed: seed}, s, cells, sets, check)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "results `DIR` (default tune-results/SCENARIO-TIME)")
	f.StringArrayVar(&sets, "set", nil, "override a setting: `KEY=VALUE`, or KEY=V1,V2 to sweep it (repeatable)")
	f.IntSliceVar(&cells, "cell", nil, "run only cell `N` of the sweep (repeatable; from 0)")
	f.IntVar(&repetitions, "repetitions", 0, "run each cell `N` times (default: the scenario's)")
	f.BoolVar(&check, "check", false, "exit 1 if an expectation failed or a run had findings")
	f.BoolVar(&list, "list", false, "list the built-in scenarios and exit")
	f.Uint64Var(&seed, "seed", 1, "`N` chooses the random draws (fault delays, Poisson arrivals) where the scenario names no seed: the same N repeats a sweep's draws")
	return cmd
}

func listScenarios(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range scenarios.Names() {
		s, err := scenarios.Open(name)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d cells × %d\t%s\n", s.Name, len(s.Cells()), s.Repetitions, firstSentence(s.Description))
	}
	return tw.Flush()
}

func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// runTune runs the sweep with progress on stderr and the summary on
// stdout.
func runTune(ctx context.Context, stdout, stderr io.Writer, r runner.Runner, s *scenarios.Scenario, cells []int, sets []string, check bool) error {
	p := &tuneProgress{w: stderr, tty: isTerminal(stderr), width: termWidth(stderr)}
	r.Progress = p
	m, runs, err := r.Run(ctx, s, cells, sets)
	p.end()
	var ue runner.UsageError
	switch {
	case errors.As(err, &ue):
		return usageError{err}
	case m == nil:
		return err
	}
	if len(runs) > 0 {
		// The summary and the report read the results back as any later
		// reader will, so what tune prints is what the files say. Failing
		// to, the sweep's own outcome below still stands.
		if sweep, lerr := reports.Load(r.Out); lerr != nil {
			fmt.Fprintf(stderr, "portshare: no summary or report: %v\n", lerr)
		} else {
			writeTuneSummary(stdout, sweep)
			fmt.Fprintf(stdout, "\nresults: %s (%d run files, manifest.json)\n", r.Out, len(runs))
			report := filepath.Join(r.Out, ReportFile)
			if n, rerr := writeReport(sweep, report, stdout); rerr != nil {
				fmt.Fprintf(stderr, "portshare: no report: %v\n", rerr)
			} else {
				fmt.Fprintf(stdout, "report: %s (%s)\n", report, size(n))
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted after %d of %d runs; their results are in %s", len(runs), p.total, r.Out)
	case err != nil:
		return err
	}
	// A run that could not start measured nothing: that is a failure of
	// the sweep whatever --check says.
	if failed := slices.IndexFunc(runs, func(r *results.Run) bool { return r.Error != "" }); failed >= 0 {
		return fmt.Errorf("cell %d, repetition %d could not run: %s", runs[failed].Cell, runs[failed].Repetition, runs[failed].Error)
	}
	if check {
		failed := 0
		for _, run := range runs {
			if !run.Pass {
				failed++
			}
		}
		if failed > 0 {
			return fmt.Errorf("--check: %d of %d runs failed an expectation or had findings (see above)", failed, len(runs))
		}
	}
	return nil
}

// tuneProgress shows a bar on a terminal (runs done of all, ETA, leaked
// handles so far) and a line per run otherwise.
type tuneProgress struct {
	w     io.Writer
	tty   bool
	width int // of the terminal, 0 if unknown
	mu    sync.Mutex
	total int
	done  int
	start time.Time
	leak  float64
	cur   string
	since time.Time // the current run's start
	drawn bool

	stop, stopped chan struct{} // the redraw ticker's, on a terminal
}

func (p *tuneProgress) Begin(m *results.Manifest, runs int) {
	p.total, p.start = runs, time.Now()
	cells := fmt.Sprintf("%d cells", len(m.Cells))
	if len(m.Only) > 0 {
		cells = fmt.Sprintf("%s of %d", plural(runs/max(m.Repetitions, 1), "cell"), len(m.Cells))
	}
	fmt.Fprintf(p.w, "scenario %s: %s × %s = %s\n", m.Scenario, cells, plural(m.Repetitions, "repetition"), plural(runs, "run"))
	if p.tty {
		// Redraw every second, so the bar moves during a run's seconds.
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(p.stopped)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-tick.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		}()
	}
}

func (p *tuneProgress) RunStarted(c scenarios.Cell, rep int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.since = fmt.Sprintf("cell %d rep %d: %s", c.Index, rep, c.Label()), time.Now()
	if p.tty {
		p.draw()
	}
}

func (p *tuneProgress) RunDone(r *results.Run) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.leak += r.Metrics["leaked_handles"]
	if p.tty {
		p.draw()
		return
	}
	verdict := "pass"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(p.w, "[%d/%d] cell %d rep %d %s: %s  (eta %s)\n", p.done, p.total, r.Cell, r.Repetition, r.Label, runLine(r, verdict), p.eta())
}

func (p *tuneProgress) eta() string {
	if p.done == 0 {
		return "?"
	}
	per := time.Since(p.start) / time.Duration(p.done)
	return (per * time.Duration(p.total-p.done)).Round(time.Second).String()
}

func (p *tuneProgress) draw() {
	const width = 24
	filled := 0
	if p.total > 0 {
		filled = width * p.done / p.total
	}
	line := fmt.Sprintf("[%s%s] %d/%d runs  eta %s  leaked handles %.0f  %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total, p.eta(), p.leak, p.cur)
	if p.cur != "" {
		line += fmt.Sprintf(" (%s)", time.Since(p.since).Round(time.Second))
	}
	fmt.Fprint(p.w, "\r\033[K"+fitLine(line, p.width))
	p.drawn = true
}

// fitLine cuts line to fit a terminal of width columns (0: unknown): a
// line that wraps leaves its first part behind on every redraw, since
// "\r\033[K" clears only the last terminal line.
func fitLine(line string, width int) string {
	r := []rune(line)
	if width <= 1 || len(r) < width {
		return line
	}
	return string(r[:width-2]) + "…"
}

// termWidth is the width of the terminal w is, or 0.
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			return cols
		}
	}
	return 0
}

func (p *tuneProgress) end() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func runLine(r *results.Run, verdict string) string {
	m := r.Metrics
	s := fmt.Sprintf("%s  sessions %.0f  errors %s  leaked %.0f  p99 %s", verdict, m["sessions"], reports.Percent(m["error_rate"]), m["leaked_handles"], reports.Millis(m["p99_ms"]))
	if r.Error != "" {
		s += "  error: " + r.Error
	}
	return s
}

// writeTuneSummary prints one line per cell run (medians over
// repetitions), which cells met every expectation, and the verdict.
func writeTuneSummary(w io.Writer, s *reports.Sweep) {
	m := s.Manifest
	fmt.Fprintf(w, "\n%s", m.Scenario)
	if m.TimeScale != "" {
		fmt.Fprintf(w, " (time scale: %s)", m.TimeScale)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "cell\tsettings\truns\tsessions\terror rate\tleaked handles\tp99\tthroughput/s\tfindings\tverdict")
	var safe, failed []string
	for _, c := range s.Ran() {
		med := func(k string) float64 { return c.Metric(k).Median }
		pass := c.Passed()
		verdict := "pass"
		switch {
		case pass == 0:
			verdict = "FAIL"
			failed = append(failed, fmt.Sprint(c.Index))
		case pass < len(c.Runs):
			verdict = fmt.Sprintf("mixed (%d/%d pass)", pass, len(c.Runs))
			failed = append(failed, fmt.Sprint(c.Index))
		default:
			safe = append(safe, fmt.Sprint(c.Index))
		}
		leaked := c.Metric("leaked_handles")
		leaks := number(leaked.Max)
		if leaked.Min != leaked.Max {
			leaks = number(leaked.Min) + "–" + number(leaked.Max)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Index, c.Label, len(c.Runs), number(med("sessions")),
			reports.Percent(med("error_rate")), leaks, reports.Millis(med("p99_ms")), number(med("throughput")), len(c.Findings()), verdict)
	}
	tw.Flush()
	if len(m.Assertions) > 0 {
		fmt.Fprintln(w, "\nexpectations:")
		for _, a := range m.Assertions {
			fmt.Fprintf(w, "  %s: %s\n", a.Where, strings.Join(a.Expect, ", "))
		}
	}
	fmt.Fprintf(w, "cells meeting every expectation with no findings: %s\n", listOrNone(safe))
	if len(failed) > 0 {
		fmt.Fprintf(w, "cells failing in some run: %s\n", listOrNone(failed))
		for _, r := range s.Runs {
			for _, ch := range r.Checks {
				if !ch.Pass {
					fmt.Fprintf(w, "  cell %d rep %d: %s was %g\n", r.Cell, r.Repetition, ch.Expect, ch.Value)
				}
			}
			for _, f := range r.Findings {
				fmt.Fprintf(w, "  cell %d rep %d: %s: %s\n", r.Cell, r.Repetition, f.Kind, f.Detail)
			}
		}
	}
	fmt.Fprintln(w, "\nverdict:")
	for _, reason := range s.Verdict().Reasons {
		fmt.Fprintf(w, "  - %s\n", reason)
	}
}

// number prints a count or rate rounded to a whole, "–" if nothing
// measured it.
func number(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return fmt.Sprintf("%.0f", f)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// plural is "1 run" or "3 runs".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
