package main

import (
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/config"
)

func newFaultCmd() *cobra.Command {
	var (
		socket string
		pid    int
	)
	cmd := &cobra.Command{
		Use:   "fault [--control-socket P | --pid PID] SPEC…",
		Short: "Apply daemon faults (pause, nofile) to a running daemon",
		Args:  cobra.ArbitraryArgs,
		Long: `Apply daemon faults to a running daemon, each on its schedule (at= and for=
count from now), and undo them when they end, on Ctrl-C, or when the terminal
goes (SIGHUP). The daemon is the
one answering at --control-socket, or process --pid. Each fault taking or
leaving effect is printed as a JSON line on stdout.

Daemon faults:
` + faults.Help(faults.Daemon) + `
restart needs whoever runs the daemon to start it again; scenarios do.
Worker faults are given to 'portshare worker --fault', client faults to
'portshare load --client-fault'.`,
		Example: `  portshare fault pause:for=2s                 # SIGSTOP the daemon for 2 s
  portshare fault nofile:at=1s,for=5s,limit=64`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("give at least one fault SPEC, e.g. pause:for=2s")
			}
			specs, err := faults.ParseAll(faults.Daemon, args)
			if err != nil {
				return usageError{err}
			}
			for _, s := range specs {
				if s.Name == "restart" {
					return usagef("%s: restart needs whoever runs the daemon to start it again (scenarios do); stop and start it yourself", s)
				}
			}
			if pid == 0 {
				raw, err := fetchStatus(socket)
				if err != nil {
					return fmt.Errorf("finding the daemon: %w (give --pid, or --control-socket)", err)
				}
				var st struct {
					PID int `json:"pid"`
				}
				if err := json.Unmarshal(raw, &st); err != nil || st.PID <= 0 {
					return fmt.Errorf("finding the daemon: no pid in its status (give --pid)")
				}
				pid = st.PID
			}
			if err := syscall.Kill(pid, 0); err != nil {
				return fmt.Errorf("process %d: %w", pid, err)
			}
			// Any catchable end undoes the faults: a daemon left stopped
			// or short of descriptors is worse than the fault. A reader
			// of stdout that goes away (| head) must not kill us either.
			signal.Ignore(syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
			defer stop()
			in, err := faults.NewInjector(pidProcess(pid), nil, specs, faults.NewLog("portshare fault", cmd.OutOrStdout(), nil))
			if err != nil {
				return usageError{err}
			}
			return in.Run(ctx, time.Now())
		},
	}
	cmd.Flags().StringVar(&socket, "control-socket", config.DefaultControlSocket(), "daemon control socket `PATH` (to find its pid)")
	cmd.Flags().IntVar(&pid, "pid", 0, "the daemon's process id `PID`, instead of asking it")
	return cmd
}

// pidProcess is a daemon known only by its pid: it cannot be restarted.
type pidProcess int

func (p pidProcess) Pid() int { return int(p) }

func (p pidProcess) Restart(time.Duration) error {
	return fmt.Errorf("pid %d: restart needs whoever runs the daemon", p)
}
