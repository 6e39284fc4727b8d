package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/testutil"
)

// startInNetns starts `portshare ARGS…` in namespace ns of n, as
// testutil.Start would outside it.
func startInNetns(t *testing.T, n *faults.Netns, ns string, args ...string) *testutil.Proc {
	t.Helper()
	cmd := n.Command(ns, os.Args[0], args...)
	// What makes the re-executed binary run childMain, and die with us.
	child := testutil.ChildCommand(os.Args[0])
	cmd.Env, cmd.SysProcAttr = child.Env, child.SysProcAttr
	return testutil.StartCmd(t, cmd)
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
	startInNetns(t, n, n.Daemon(), "serve", "--config", e.cfg).WaitOutput(t, "portshare daemon serving", 10*time.Second)
	startInNetns(t, n, n.Daemon(), "worker", "--control-socket", socket, "--name", "orders", "--mode", "echo",
		"--route", e.route("net.tcp://+:%d/orders/")).WaitOutput(t, "worker registered", 10*time.Second)
	e.target = fmt.Sprintf("net.tcp://%s:%d/orders/", n.DaemonAddr(), netnsPort)
	return e
}

// load runs `portshare load` from the client namespace, 50 sessions a
// second for 2 s, requires every session ok, and returns the result.
func (e *netnsEnv) load(t *testing.T) *loadgen.Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "result.json")
	p := startInNetns(t, e.n, e.n.Client(), "load", "--target", e.target, "--rate", "50", "--duration", "2s", "--json", path)
	require.Equal(t, 0, p.Wait(10*time.Second), p.Output())
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
