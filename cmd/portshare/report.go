package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/reports"
	"github.com/portshare/portshare/reports/page"
)

// ReportFile is where `portshare tune` and `portshare report` write the
// report when -o does not say: beside the results it shows.
const ReportFile = "report.html"

func newReportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report RESULTS_DIR [-o FILE]",
		Short: "Write a tuning sweep's results as one self-contained HTML report",
		Long: `Read a results directory written by 'portshare tune' (run files copied in
from other machines included) and write one HTML file: the verdict first
(which settings avoided leaked handles and errors, the recommended one,
what the defaults did and why), then heatmaps and a sortable table of every
cell, each cell's detail over time, and the environment. The file needs
nothing else to open: no network, no scripts or fonts from elsewhere.
'portshare tune' writes it at the end of every sweep.

-o defaults to RESULTS_DIR/` + ReportFile + `; -o - writes to standard output.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes one RESULTS_DIR, got %d arguments (see '%s --help')", c.CommandPath(), len(args), c.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := reports.Load(args[0])
			if err != nil {
				return usageError{err}
			}
			if out == "" {
				out = filepath.Join(args[0], ReportFile)
			}
			n, err := writeReport(s, out, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.OutOrStdout(), "report: %s (%s)\n", out, size(n))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "the HTML file to write (default RESULTS_DIR/"+ReportFile+"; - for standard output)")
	return cmd
}

// writeReport renders s to path, or to stdout for "-" (writeOutput: a
// reader never opens half a report, and on error nothing is left). It
// returns the report's size.
func writeReport(s *reports.Sweep, path string, stdout io.Writer) (int, error) {
	n, err := writeOutput(path, stdout, func(w io.Writer) error { return page.Write(w, s) })
	var ce createError
	if errors.As(err, &ce) {
		return 0, usagef("cannot write the report: %v", ce.error)
	}
	return n, err
}

func size(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
