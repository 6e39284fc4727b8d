// Command portshare is the TCP port-sharing daemon, its reference worker,
// and the tools that load-test and tune it. See `portshare --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors that exit 2: bad flags, arguments or configuration.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// run executes one command line and returns the exit code: 0 success,
// 1 runtime failure, 2 usage or configuration error. Errors are printed as
// one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(stderr, "portshare: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(msg, "unknown command") {
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "portshare",
		Short:         "TCP port sharing for Linux, and the suite that load-tests and tunes it",
		Long:          "portshare owns shared TCP ports, routes each new connection by its net.tcp Via, HTTP Host and path, or TLS SNI, and hands the socket to the registered worker process.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(newCompareCmd(), newDemoCmd(), newFaultCmd(), newLoadCmd(), newReportCmd(), newServeCmd(), newStatusCmd(), newTuneCmd(), newWorkerCmd(), newVersionCmd())
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = noArgs
		}
	}
	return root
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see '%s --help')", c.CommandPath(), args[0], c.CommandPath())
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
