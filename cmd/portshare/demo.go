package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portshare/portshare/scenarios/runner"
	"github.com/portshare/portshare/sharer/nmf"
)

func newDemoCmd() *cobra.Command {
	var hold time.Duration
	var port int
	cmd := &cobra.Command{
		Use:   "demo [--port N] [--hold D]",
		Short: "Start a daemon and two reference workers on one shared port, and talk to them",
		Long: `Start a daemon (portshare serve) on loopback with an example configuration, an
echo worker for net.tcp://+:PORT/orders/ and an HTTP worker for
http://+:PORT/api/, all as child processes; then run a net.tcp session, an
HTTP request and a request for an unknown route through the shared port,
print the daemon's status, and stop everything. --hold keeps them running
for a while (Ctrl-C stops early) so you can try them yourself.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 {
				return usagef("--port must be from 1 to 65535 (0 picks a free one), got %d", port)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// "demo | head" must still stop its children and remove its files.
			signal.Ignore(syscall.SIGPIPE)
			defer signal.Reset(syscall.SIGPIPE)
			return runDemo(ctx, cmd.OutOrStdout(), port, hold)
		},
	}
	cmd.Flags().DurationVar(&hold, "hold", 0, "keep the daemon and workers running this long after the demo")
	cmd.Flags().IntVar(&port, "port", 0, "shared port (default: a free one)")
	return cmd
}

const demoConfig = `# Example configuration (every key: docs/portshare.example.yaml).
control_socket: %s
listen_addresses: ["127.0.0.1"]
listen_backlog: 64
max_pending_accepts: 4
max_pending_connections: 100
receive_timeout: 10s
dispatch_timeout: 5s
dispatch_failure_policy: reclaim
queue_timeout: 5s
`

func runDemo(ctx context.Context, out io.Writer, port int, hold time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portshare-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if port == 0 {
		if port, err = runner.FreePort(); err != nil {
			return err
		}
	}
	socket := filepath.Join(dir, "portshare.sock")
	cfgPath := filepath.Join(dir, "portshare.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, demoConfig, socket), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return err
	}
	defer logf.Close()

	var children []*runner.Child
	start := func(args ...string) error {
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		c, err := runner.Start(args[0], cmd)
		if err != nil {
			return err
		}
		children = append(children, c)
		fmt.Fprintf(out, "started  portshare %s  (pid %d)\n", strings.Join(args, " "), c.Pid())
		return nil
	}
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			children[i].Stop(syscall.SIGTERM, 10*time.Second)
		}
	}()
	// ready waits until cond holds, giving up when a child exits.
	ready := func(what string, cond func() bool) error {
		err := runner.Poll(ctx, 10*time.Second, func() (bool, error) {
			if cond() {
				return true, nil
			}
			for _, c := range children {
				if c.Exited() {
					return true, fmt.Errorf("portshare %s exited", c.Name)
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w (log: %s)", what, err, runner.Tail(logf.Name(), 1))
		}
		return nil
	}
	if err := start("serve", "--config", cfgPath); err != nil {
		return err
	}
	if err := ready("daemon did not start", func() bool { _, err := fetchStatus(socket); return err == nil }); err != nil {
		return err
	}
	orders := fmt.Sprintf("net.tcp://+:%d/orders/", port)
	api := fmt.Sprintf("http://+:%d/api/", port)
	if err := start("worker", "--control-socket", socket, "--name", "orders", "--mode", "echo", "--route", orders); err != nil {
		return err
	}
	if err := start("worker", "--control-socket", socket, "--name", "api", "--mode", "http", "--route", api); err != nil {
		return err
	}
	if err := ready("workers did not register", func() bool {
		raw, err := fetchStatus(socket)
		return err == nil && strings.Count(string(raw), `"state":"live"`) == 2
	}); err != nil {
		return err
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	fmt.Fprintf(out, "\nshared port %s:\n", addr)
	via := fmt.Sprintf("net.tcp://localhost:%d/orders/submit", port)
	reply, err := demoSession(addr, via, "hello")
	fmt.Fprintf(out, "  net.tcp %-45s -> %s\n", via, result(reply, err))
	reply, err = demoHTTP("http://" + addr + "/api/items")
	fmt.Fprintf(out, "  http    %-45s -> %s\n", "GET /api/items", result(reply, err))
	via = fmt.Sprintf("net.tcp://localhost:%d/unknown/", port)
	reply, err = demoSession(addr, via, "hello")
	fmt.Fprintf(out, "  net.tcp %-45s -> %s\n\n", via, result(reply, err))

	raw, err := fetchStatus(socket)
	if err != nil {
		return err
	}
	if err := printStatusJSON(out, raw); err != nil {
		return err
	}
	if hold > 0 {
		fmt.Fprintf(out, "\nholding for %s (Ctrl-C stops): try `portshare status --control-socket %s`\n", hold, socket)
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
	}
	return nil
}

func demoSession(addr, via, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := nmf.Open(c, via)
	if err != nil {
		return "", err
	}
	p, err := s.RoundTrip([]byte(msg))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("PreambleAck, echo %q", p), s.End()
}

func demoHTTP(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return fmt.Sprintf("%s, worker %s, body %q", resp.Status, resp.Header.Get("X-Portshare-Worker"), body), nil
}

func result(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	return s
}
