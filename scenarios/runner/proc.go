package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/faults"
)

// child is one process of a run: the daemon, a worker or a load.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
	// stopping is set before the runner signals it, so that its exit is
	// not taken for a crash; it stays unset for a child that had already
	// exited on its own.
	mu       sync.Mutex
	stopping bool
}

// starter makes the commands of a run: the portshare binary with its
// environment, in a network namespace when the run has them.
type starter struct {
	exe   string
	env   []string
	netns *faults.Netns
	logs  string // directory of the run's logs
}

// start runs `portshare ARGS…` as a child named name, in namespace ns
// ("" for the runner's own). Its output goes to logs/NAME.log. The child
// has a process group of its own, so a Ctrl-C on the terminal reaches the
// runner only and the runner stops children in order; and it is killed if
// the runner dies.
func (st *starter) start(name, ns string, args ...string) (*child, error) {
	var cmd *exec.Cmd
	if ns != "" {
		cmd = st.netns.Command(ns, st.exe, args...)
	} else {
		cmd = exec.Command(st.exe, args...)
	}
	cmd.Env = append(os.Environ(), st.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(st.logs + "/" + name + ".log")
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// expected reports whether the runner asked the child to stop.
func (c *child) expected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// stop sends sig and waits up to grace for the child to exit, then kills
// its process group. It returns how the child exited.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	// A worker that crashed just before the teardown, its watcher not yet
	// run, must still be reported: only a child still running when asked
	// to stop exits as expected.
	c.mu.Lock()
	c.stopping = c.stopping || !c.exited()
	c.mu.Unlock()
	if !c.exited() {
		c.cmd.Process.Signal(sig)
		select {
		case <-c.done:
		case <-time.After(grace):
			syscall.Kill(-c.pid(), syscall.SIGKILL)
			<-c.done
		}
	}
	return c.err
}

// exitText says how a child ended, for events and findings.
func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

// tail returns the last lines of a log, for error messages.
func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, " | ")
}
