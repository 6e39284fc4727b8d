package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/testutil"
)

// nsProc is the test binary run as portshare (childMain) inside a network
// namespace, through (*faults.Netns).Command.
type nsProc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan struct{}
}

// startInNetns starts `portshare ARGS…` in namespace ns of n. The child is
// killed at the end of the test if still running, and its output logged
// if the test failed.
func startInNetns(t *testing.T, n *faults.Netns, ns string, args ...string) *nsProc {
	t.Helper()
	cmd := n.Command(ns, os.Args[0], args...)
	// What makes the re-executed binary run childMain, and die with us.
	child := testutil.ChildCommand(os.Args[0])
	cmd.Env, cmd.SysProcAttr = child.Env, child.SysProcAttr
	p := &nsProc{cmd: cmd, out: &testutil.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of portshare %v in %s:\n%s", args, ns, p.out.String())
		}
	})
	return p
}

// waitOutput waits up to timeout for the child's output to contain s,
// failing at once if the child exits without printing it.
func (p *nsProc) waitOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), s) {
				return
			}
			t.Fatalf("the child exited without printing %q; output:\n%s", s, p.out.String())
		case <-deadline:
			t.Fatalf("the child did not print %q within %s; output:\n%s", s, timeout, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// wait waits up to timeout for the child to exit and returns its exit
// code, failing the test on timeout.
func (p *nsProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("the child did not exit within %s; output:\n%s", timeout, p.out.String())
		return -1
	}
}

// netnsEnv is a daemon and an echo worker in the daemon namespace of a
// Netns, serving net.tcp://+:PORT/orders/ on the daemon namespace's
// address, for load run from the client namespace.
type netnsEnv struct {
	*env
	n      *faults.Netns
	target string
}

// netnsPort is the shared port. The daemon namespace is new and ours, so
// any port is free in it.
const netnsPort = 8808

func startNetnsEnv(t *testing.T) *netnsEnv {
	t.Helper()
	if err := faults.Available(); err != nil {
		t.Skip(err)
	}
	n, err := faults.NewNetns()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, n.Close()) }) // after the children die: cleanups run last first

	socket := testutil.SocketPath(t)
	e := &netnsEnv{env: &env{t: t, dir: filepath.Dir(socket), socket: socket, port: netnsPort}, n: n}
	e.cfg = writeConfig(t, e.dir, socket, fmt.Sprintf("listen_addresses: [%q]", n.DaemonAddr()))
	startInNetns(t, n, n.Daemon(), "serve", "--config", e.cfg).waitOutput(t, "portshare daemon serving", 10*time.Second)
	startInNetns(t, n, n.Daemon(), "worker", "--control-socket", socket, "--name", "orders", "--mode", "echo",
		"--route", e.route("net.tcp://+:%d/orders/")).waitOutput(t, "worker registered", 10*time.Second)
	e.target = fmt.Sprintf("net.tcp://%s:%d/orders/", n.DaemonAddr(), netnsPort)
	return e
}

// load runs `portshare load` from the client namespace, 50 sessions a
// second for 2 s, requires every session ok, and returns the result.
func (e *netnsEnv) load(t *testing.T) *loadgen.Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "result.json")
	p := startInNetns(t, e.n, e.n.Client(), "load", "--target", e.target, "--rate", "50", "--duration", "2s", "--json", path)
	require.Equal(t, 0, p.wait(t, 10*time.Second), p.out.String())
	_, res := readResultFile(t, path)
	onlyOutcome(t, res, loadgen.OK, 100)
	require.Contains(t, res.Phases, loadgen.PhaseHandshake)
	require.EqualValues(t, 100, res.Phases[loadgen.PhaseHandshake].Count)
	return res
}

func TestNetnsLoadFromClientNamespaceThroughDaemon(t *testing.T) {
	e := startNetnsEnv(t)
	e.load(t)
	st := e.balanced()
	assert.EqualValues(t, 100, st.Ledger.Outcomes["dispatched"], "each session is one hand-off")
}

// With netem delaying what leaves the daemon's namespace by 50 ms, applied
// by the injector as scenarios apply it, the PreambleAck of every session
// comes 50 ms later.
func TestNetemDelayMovesHandshakeLatencyBy50ms(t *testing.T) {
	if err := faults.NetemAvailable(); err != nil {
		t.Skip(err)
	}
	e := startNetnsEnv(t)
	base := e.load(t).Phases[loadgen.PhaseHandshake]

	log := faults.NewLog("test", nil, nil)
	in, err := faults.NewInjector(nil, e.n, []faults.Spec{faults.MustParse(faults.Network, "netem:delay=50ms")}, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, time.Now()) }()
	testutil.Eventually(t, step, func() bool { return len(log.Events()) == 1 }, "netem applied")
	delayed := e.load(t).Phases[loadgen.PhaseHandshake]
	cancel()
	require.NoError(t, <-done, "netem removed")

	const us = int64(time.Microsecond)
	// 1 ms below 50 ms is room for the histograms' rounding (32 µs at
	// 50 ms) and for the two runs' medians differing in what the daemon
	// and worker take: netem itself never sends early.
	assert.GreaterOrEqual(t, delayed.P50-base.P50, int64(49*time.Millisecond)/us,
		"handshake p50 %d µs without netem, %d µs with delay=50ms", base.P50, delayed.P50)
	assert.GreaterOrEqual(t, delayed.Min, int64(49*time.Millisecond)/us, "every PreambleAck is delayed")
}
