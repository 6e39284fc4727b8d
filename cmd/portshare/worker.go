package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/route"
	"github.com/portshare/portshare/sharer/worker"
)

// modeScheme is the route scheme each mode serves.
var modeScheme = map[refworker.Mode]string{refworker.Echo: "net.tcp", refworker.HTTP: "http", refworker.HTTPS: "tls"}

func newWorkerCmd() *cobra.Command {
	var (
		routes      []string
		name, mode  string
		listen      string
		socket      string
		maxInflight int
		idle        time.Duration
		faultSpecs  []string
		eventsPath  string
		faultEpoch  string
	)
	cmd := &cobra.Command{
		Use:   "worker --route URI [--route URI…] --name NAME [--mode echo|http|https] [--max-inflight N] [--fault SPEC…]",
		Short: "Run the reference worker (echo, http or https)",
		Long: `Run the reference worker. It registers its routes with the daemon and serves
every connection handed to it:
  echo   net.tcp duplex sessions: PreambleAck, each SizedEnvelope echoed as NAME:payload, End
  http   200 with header X-Portshare-Worker: NAME and body "NAME METHOD PATH"
  https  the same over TLS with a self-signed certificate made at start
With --listen ADDR it serves a socket of its own instead of the daemon's (the
baseline for benchmarks); it then prints "listening on ADDR" on stdout.

--fault SPEC (repeatable) makes the worker misbehave; at= and for= count
from the moment it starts serving, or from --fault-epoch (so that the
workers and the load of one run share a clock). Each fault taking or leaving effect is
logged, and written as a JSON line to --fault-events FILE if given.
Worker faults:
` + faults.Help(faults.Worker),
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := refworker.ParseMode(mode)
			if err != nil {
				return usageError{err}
			}
			if name == "" {
				return usagef("--name is required")
			}
			if maxInflight < 1 {
				return usagef("--max-inflight must be at least 1, got %d", maxInflight)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log := newLogger(cmd.ErrOrStderr(), "info")
			if listen != "" && len(routes) > 0 {
				return usagef("--listen serves a socket of its own: drop --route, or drop --listen to register with the daemon")
			}
			specs, err := faults.ParseAll(faults.Worker, faultSpecs)
			if err == nil {
				err = faults.CheckWorker(specs)
			}
			if err != nil {
				return usageError{err}
			}
			start := time.Time{}
			if faultEpoch != "" {
				if start, err = time.Parse(time.RFC3339Nano, faultEpoch); err != nil {
					return usagef("--fault-epoch %q: want an RFC 3339 time such as 2026-11-24T10:00:00.000Z", faultEpoch)
				}
			}
			var eventsFile io.Writer
			if eventsPath != "" {
				f, err := os.OpenFile(eventsPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
				if err != nil {
					return usagef("--fault-events: %v", err)
				}
				defer f.Close()
				eventsFile = f
			}
			for _, r := range routes {
				u, err := route.Parse(r)
				if err != nil {
					return usageError{err}
				}
				if want := modeScheme[m]; u.Scheme != want {
					return usagef("--mode %s serves %s:// routes, not %s", m, want, r)
				}
			}
			var ln net.Listener
			if listen != "" {
				if ln, err = net.Listen("tcp", listen); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "listening on %s\n", ln.Addr())
			} else {
				if len(routes) == 0 {
					return usagef("--route is required (or --listen ADDR to serve without the daemon)")
				}
				wl, err := worker.Listen(ctx, routes, worker.Options{ControlSocket: socket, Name: name, MaxInflight: maxInflight, Logger: log})
				if err != nil {
					return err
				}
				reg := wl.Registered()
				log.Info("worker registered", "name", name, "routes", reg.Routes, "policy", reg.Policy, "max_inflight", reg.MaxInflight)
				ln = wl
			}
			var events *faults.Log
			if len(specs) > 0 {
				events = faults.NewLog(name, eventsFile, log)
				if start.IsZero() {
					start = time.Now()
				}
				fl, err := faults.NewListener(ln, specs, start, events)
				if err != nil {
					ln.Close()
					return err
				}
				ln = fl
			}
			err = refworker.Serve(ctx, ln, refworker.Options{Name: name, Mode: m, Idle: idle})
			ln.Close()
			if werr := events.Err(); werr != nil {
				log.Error("fault events were lost", "file", eventsPath, "err", werr)
			}
			if ctx.Err() != nil && err == nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&routes, "route", nil, "route `URI` to register (repeatable), e.g. net.tcp://+:8808/orders/")
	f.StringVar(&name, "name", "", "worker `NAME` (workers with the same name share routes)")
	f.StringVar(&mode, "mode", "echo", "echo, http or https")
	f.IntVar(&maxInflight, "max-inflight", 1, "hand-offs the daemon may send before Accept takes them (`N`)")
	f.StringVar(&listen, "listen", "", "serve on a socket of its own at `ADDR` instead of the daemon's")
	f.StringVar(&socket, "control-socket", config.DefaultControlSocket(), "daemon control socket `PATH`")
	f.DurationVar(&idle, "idle", 2*time.Minute, "close a connection idle this long")
	f.StringArrayVar(&faultSpecs, "fault", nil, "worker fault `SPEC` (repeatable), e.g. slow-accept:delay=200ms,dist=exp")
	f.StringVar(&eventsPath, "fault-events", "", "write fault events as JSON lines to `FILE`")
	f.StringVar(&faultEpoch, "fault-epoch", "", "count fault times from `TIME` (RFC 3339) instead of from the start")
	return cmd
}
