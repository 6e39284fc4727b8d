package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/faults"
)

// Child is a process started by Start: a run's daemon, a worker or a
// load, or the children of `portshare demo`.
type Child struct {
	Name string // for messages (and, in a run, its log: NAME.log)
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
	// stopping is set before Stop signals it, so that its exit is not
	// taken for a crash; it stays unset for a child that had already
	// exited on its own.
	mu       sync.Mutex
	stopping bool
}

// Start starts cmd as a child named name; the caller sets its output and
// environment. The child has a process group of its own, so that a Ctrl-C
// on the terminal reaches the parent only and the parent stops its
// children in order (Stop); and it is killed if the parent dies.
func Start(name string, cmd *exec.Cmd) (*Child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &Child{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed once the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Wait waits for the child to exit and returns how it exited
// (exec.Cmd.Wait's error).
func (c *Child) Wait() error {
	<-c.done
	return c.err
}

// expected reports whether the child was asked to stop.
func (c *Child) expected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// Stop sends sig and waits up to grace for the child to exit, then kills
// its process group. It returns how the child exited.
func (c *Child) Stop(sig syscall.Signal, grace time.Duration) error {
	// A worker that crashed just before the teardown, its watcher not yet
	// run, must still be reported: only a child still running when asked
	// to stop exits as expected.
	c.mu.Lock()
	c.stopping = c.stopping || !c.Exited()
	c.mu.Unlock()
	if !c.Exited() {
		c.cmd.Process.Signal(sig)
		select {
		case <-c.done:
		case <-time.After(grace):
			syscall.Kill(-c.Pid(), syscall.SIGKILL)
			<-c.done
		}
	}
	return c.err
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
// ("" for the runner's own). Its output goes to logs/NAME.log.
func (st *starter) start(name, ns string, args ...string) (*Child, error) {
	var cmd *exec.Cmd
	if ns != "" {
		cmd = st.netns.Command(ns, st.exe, args...)
	} else {
		cmd = exec.Command(st.exe, args...)
	}
	cmd.Env = append(os.Environ(), st.env...)
	log, err := os.Create(st.logs + "/" + name + ".log")
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	return Start(name, cmd)
}

// Poll calls cond every 50 ms until it returns true, timeout passes or
// ctx ends. When cond returns true, Poll returns cond's error (nil for
// success, else why waiting is pointless: a child exited, say). An error
// cond returns with false is remembered for the timeout's message.
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := cond()
		if done {
			return err
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %s: %v", timeout, last)
			}
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
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

// logTail is how much of the end of a log Tail and stoppedLedger read: a
// daemon logs a line per leaked handle, and a run may last an hour.
const logTail = 64 << 10

// lastLines returns the complete lines of the last logTail bytes of the
// file at path (every line of a shorter file), without the final newline.
func lastLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	from := max(size-logTail, 0)
	b := make([]byte, size-from)
	if _, err := f.ReadAt(b, from); err != nil && err != io.EOF {
		return nil, err
	}
	if from > 0 {
		// The first line is cut short: drop it (unless it is all there is).
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i+1 < len(b) {
			b = b[i+1:]
		}
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"), nil
}

// Tail returns the last lines of a log (at most 64 KiB of it) joined by
// " | ", for error messages; "" if it cannot be read.
func Tail(path string, lines int) string {
	all, _ := lastLines(path)
	all = strings.Split(strings.TrimSpace(strings.Join(all, "\n")), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, " | ")
}
