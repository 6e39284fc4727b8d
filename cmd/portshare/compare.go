package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/reports/compare"
)

func newCompareCmd() *cobra.Command {
	var (
		junit, markdown string
		tolerances      []string
	)
	cmd := &cobra.Command{
		Use:   "compare BASELINE NEW [--junit FILE] [--markdown FILE] [--tolerance METRIC=TOL…]",
		Short: "Compare two tune results directories of one scenario: exit 1 on a regression (the CI gate)",
		Long: `Compare NEW, a results directory of 'portshare tune', with BASELINE, one of the
same scenario, cell by cell (cells match by label), and print a table:
each compared metric's median with its spread over the repetitions, the
change, the limit and the verdict, then each expectation of the scenario.

A metric regresses when NEW's median is past the limit its tolerance sets
from the baseline's worst repetition (with 4 or more repetitions on both
sides, only if a Mann–Whitney U test also finds the difference significant,
p < 0.05; a median past the limit that is not significant is ok, and the
verdict says so). A tolerance is exact, off (shown, not gated), +A
(absolute slack), xR (ratio) or xR+A: the limit is worst×R + A, or
worst/R − A for ok, throughput and dispatched, where lower is worse. exact
is for counts that must stay zero: where the baseline's worst repetition
is 0, every NEW repetition must be 0; where it is not, exact is x1.5+2 on
the median. By default leaked_handles, dispatch_timeout, evictions,
dispatch_error, ledger_violations, fd_violations and findings are exact,
error_rate +0.05, p99_ms x2+20 and throughput x1.5; other metrics are
compared only when named. --tolerance overrides the scenario's compare
section, which overrides the defaults (scenarios/README.md).

The comparison fails if a metric regressed, if a NEW repetition failed an
expectation, if NEW did not run a cell the baseline ran, or if a NEW
repetition could not start. An expectation the baseline failed too, or
repetitions the baseline could not start either, fail only if NEW fails
them in a larger share of its repetitions; otherwise they are warnings
(WARN lines), so a sweep compared with itself passes. Cells only in NEW
are not compared (their expectations still count).

--junit FILE writes JUnit XML (a test case per cell × metric and
expectation), --markdown FILE a summary for a pull request comment; FILE -
is the standard output, and the table then goes to the standard error.

Exit status: 0 no regression, 1 the comparison failed, 2 bad arguments or
unreadable results (nothing was compared).`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("%s takes two results directories, BASELINE and NEW, got %d argument(s) (see '%s --help')", c.CommandPath(), len(args), c.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tols, err := compare.ParseToleranceFlags(tolerances)
			if err != nil {
				return usageError{err}
			}
			if junit == "-" && markdown == "-" {
				return usagef("--junit and --markdown cannot both write to the standard output: give one of them a file")
			}
			r, err := compare.Load(args[0], args[1], compare.Options{Tolerances: tols})
			if err != nil {
				return usageError{err}
			}
			table := cmd.OutOrStdout()
			if junit == "-" || markdown == "-" {
				table = cmd.ErrOrStderr() // stdout carries the document alone
			}
			if err := r.WriteText(table); err != nil {
				return usagef("writing the table: %v", err)
			}
			for _, out := range []struct {
				flag, path string
				write      func(io.Writer) error
			}{{"--junit", junit, r.WriteJUnit}, {"--markdown", markdown, r.WriteMarkdown}} {
				if err := writeDocument(cmd.OutOrStdout(), out.flag, out.path, out.write); err != nil {
					return err
				}
			}
			if r.Failed() {
				return fmt.Errorf("compare: %s (see above)", r.Summary())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&junit, "junit", "", "write JUnit XML to `FILE` (- for the standard output)")
	f.StringVar(&markdown, "markdown", "", "write a Markdown summary for a pull request to `FILE` (- for the standard output)")
	f.StringArrayVar(&tolerances, "tolerance", nil, "`METRIC=TOL`: compare METRIC with tolerance TOL (exact, off, +A, xR, xR+A), over the scenario and the defaults (repeatable)")
	return cmd
}

// writeDocument writes one of the documents to path, or to stdout for
// "-" (writeOutput); nothing for "". A file that cannot be written is a
// usage error (exit 2): the gate's outcome is unknown to whoever reads
// that file.
func writeDocument(stdout io.Writer, flag, path string, write func(io.Writer) error) error {
	if path == "" {
		return nil
	}
	_, err := writeOutput(path, stdout, write)
	var ce createError
	switch {
	case errors.As(err, &ce) && errors.Is(ce, fs.ErrNotExist):
		return usagef("%s %s: no such directory: create %s first", flag, path, filepath.Dir(path))
	case err != nil:
		return usagef("%s %s: %v", flag, path, err)
	}
	return nil
}
