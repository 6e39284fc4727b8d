// Package testutil holds what the integration tests share: child processes
// (the test binary re-executed as portshare or as a test worker), free
// loopback ports, descriptor counts, and small protocol clients.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ChildEnv marks a re-executed test binary. A test whose code under test
// starts the test binary itself (the tune runner, as portshare) sets it in
// its own environment, for the children to inherit.
const ChildEnv = "PORTSHARE_TEST_CHILD"

// RunChildIfRequested must be the first thing in a TestMain that starts
// children with Start: in a child it runs main with the child's arguments
// and exits with its code; in the test process it returns.
func RunChildIfRequested(main func(args []string) int) {
	if os.Getenv(ChildEnv) == "" {
		return
	}
	os.Exit(main(os.Args[1:]))
}

// ChildCommand returns a command that runs the test binary at bin (a copy
// of os.Args[0], say) as a child with args, for tests that need control
// over how it runs (another user, say).
func ChildCommand(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Proc is a child process whose output is kept for the test log.
type Proc struct {
	Cmd  *exec.Cmd
	out  *Buffer
	done chan struct{}
	err  error
}

// Start runs the test binary again as a child with args (passed to the
// main given to RunChildIfRequested), as StartCmd runs it.
func Start(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	cmd := ChildCommand(os.Args[0], args...)
	cmd.Env = append(cmd.Env, env...)
	return StartCmd(t, cmd)
}

// StartCmd starts cmd (from ChildCommand, or made otherwise: to run in a
// network namespace, say) and keeps its output. The child is killed at
// the end of the test if still running, and its output logged when the
// test fails.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p := &Proc{Cmd: cmd, out: out, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args[1:], err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(cmd.Args[1:], " "), out.String())
		}
	})
	return p
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Output returns what the child printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the child.
func (p *Proc) Signal(sig syscall.Signal) { p.Cmd.Process.Signal(sig) }

// Kill kills the child and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// Wait waits up to timeout for the child to exit and returns its exit
// code, or -1 on timeout.
func (p *Proc) Wait(timeout time.Duration) int {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitOutput waits up to timeout for the child's output to contain s.
func (p *Proc) WaitOutput(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), s) {
		// Exited, then the output once more: what it printed before it
		// exited is all there.
		if time.Now().After(deadline) || p.Exited() && !strings.Contains(p.Output(), s) {
			t.Fatalf("child never printed %q; output:\n%s", s, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a
// place for a child's output or an in-process daemon's log.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FDCount counts the open descriptors of process pid.
func FDCount(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatalf("counting fds of %d: %v", pid, err)
	}
	return len(ents)
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RSS returns the resident set size of process pid in bytes.
func RSS(t testing.TB, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("reading status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// RaiseNOFILE raises this process's soft descriptor limit to at least n
// (up to the hard limit) and returns the limit in force. Children inherit it.
func RaiseNOFILE(t testing.TB, n uint64) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < n {
		old := lim.Cur
		lim.Cur = min(n, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lim.Cur = old; syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	}
	return lim.Cur
}
