package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/daemon"
)

func newServeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "Run the port-sharing daemon",
		Long: `Run the port-sharing daemon. Without --config every key takes its default
(every key, with its default, is in docs/portshare.example.yaml). SIGTERM or
SIGINT drains and exits 0. SIGHUP re-reads the file and applies these live:
allow_accounts, receive_timeout, dispatch_timeout, queue_timeout,
max_pending_connections, listen_backlog, grace_period, reregister_backoff and
max_http_head; the other keys need a restart.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			if file != "" {
				var err error
				if cfg, err = config.Load(file); err != nil {
					return usageError{err}
				}
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.LogLevel)
			d, err := daemon.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go reloadOnHUP(ctx, hup, file, d, log)
			return d.Serve(ctx)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML configuration `FILE`")
	return cmd
}

func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, file string, d *daemon.Daemon, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if file == "" {
				log.Info("SIGHUP ignored: the daemon runs without --config")
				continue
			}
			cfg, err := config.Load(file)
			if err == nil {
				err = d.Reload(cfg)
			}
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
			}
		}
	}
}
