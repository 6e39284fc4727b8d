package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/daemon"
)

func newStatusCmd() *cobra.Command {
	var socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--control-socket P] [--json]",
		Short: "Show the daemon's routes, workers, counters and ledger",
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := fetchStatus(socket)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(append(raw, '\n'))
				return err
			}
			return printStatusJSON(cmd.OutOrStdout(), raw)
		},
	}
	cmd.Flags().StringVar(&socket, "control-socket", config.DefaultControlSocket(), "daemon control socket `PATH`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status document as JSON")
	return cmd
}

// fetchStatus asks the daemon at socket for its status document.
func fetchStatus(socket string) ([]byte, error) { return control.FetchStatus(socket, 10*time.Second) }

// printStatusJSON prints a status document for people.
func printStatusJSON(w io.Writer, raw []byte) error {
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("bad status from daemon: %w", err)
	}
	printStatus(w, &st)
	return nil
}

func printStatus(w io.Writer, st *daemon.Status) {
	fmt.Fprintf(w, "daemon pid %d, policy %s, ports %v, pending %d, queued %d, in flight %d\n\n",
		st.PID, st.Policy, st.Ports, st.Pending, st.Queued, st.Inflight)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(st.Listen) > 0 {
		fmt.Fprintln(tw, "LISTENING ON\tACCEPT QUEUE\tBACKLOG")
		for _, q := range st.Listen {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", q.Address, q.Queued, q.Backlog)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(tw, "ROUTE\tSTATE\tWORKER\tPROCESSES\tQUEUED")
	for _, r := range st.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", r.URI, r.State, r.Worker, len(r.Workers), r.Queued)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "WORKER\tID\tPID\tUID\tIN FLIGHT\tMAX IN FLIGHT")
	for _, wk := range st.Workers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", wk.Name, wk.ID, wk.PID, wk.UID, wk.Inflight, wk.MaxInflight)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nledger: accepted %d, open %d", st.Ledger.Accepted, st.Ledger.Open)
	names := daemon.OutcomeNames()
	for _, n := range names {
		fmt.Fprintf(w, ", %s %d", n, st.Ledger.Outcomes[n])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\ncounters:")
	for _, name := range slices.Sorted(maps.Keys(st.Counters)) {
		if name == "connection_outcomes_total" {
			continue // the ledger line above
		}
		fmt.Fprintf(w, "  %-32s", name)
		switch v := st.Counters[name].(type) {
		case float64:
			fmt.Fprintf(w, " %g", v)
		case map[string]any:
			for _, label := range slices.Sorted(maps.Keys(v)) {
				fmt.Fprintf(w, " %s=%v", label, v[label])
			}
		}
		fmt.Fprintln(w)
	}
}
