package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/daemon"
	"github.com/portshare/portshare/sharer/testutil"
)

// faultyWorker starts `portshare worker` with faults, its events written
// to a file whose path it returns.
func (e *env) faultyWorker(name string, extra []string, specs ...string) (*testutil.Proc, string) {
	e.t.Helper()
	events := filepath.Join(e.dir, name+".events")
	args := []string{"worker", "--control-socket", e.socket, "--name", name, "--mode", "echo",
		"--route", e.route("net.tcp://+:%d/orders/"), "--fault-events", events}
	args = append(args, extra...)
	for _, s := range specs {
		args = append(args, "--fault", s)
	}
	p := testutil.Start(e.t, nil, args...)
	p.WaitOutput(e.t, "worker registered", 10*time.Second)
	return p, events
}

// netTCPLoad runs `portshare load` at rate sessions/s for d against the
// orders route and returns its result.
func (e *env) netTCPLoad(rate int, d time.Duration, extra ...string) *loadgen.Result {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "result.json")
	args := append([]string{"load", "--target", fmt.Sprintf("net.tcp://127.0.0.1:%d/orders/", e.port),
		"--rate", fmt.Sprint(rate), "--duration", d.String(), "--timeout", "8s", "--json", out}, extra...)
	code, _, errs := cli(args...)
	require.Equal(e.t, 0, code, errs)
	_, res := readResultFile(e.t.(*testing.T), out)
	return res
}

func readEvents(t *testing.T, path string) []faults.Event {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	ev, err := faults.ReadEvents(f)
	require.NoError(t, err)
	return ev
}

// Under compat, a worker slower to accept than dispatch_timeout reproduces
// SMSvcHost's cascade: the leaked-handle event, the client told
// ConnectionDispatchFailed, the worker dropped, and with its last route
// gone the port closed, so later clients are refused.
func TestSlowAcceptUnderCompatLeaksHandleAndClosesThePort(t *testing.T) {
	e := startEnv(t, "dispatch_failure_policy: compat\ndispatch_timeout: 300ms\n")
	w, events := e.faultyWorker("orders", nil, "slow-accept:delay=1s")
	res := e.netTCPLoad(10, 3*time.Second)

	assert.EqualValues(t, 1, res.Outcomes["fault:ConnectionDispatchFailed"], "outcomes %v", res.Outcomes)
	assert.Positive(t, res.Outcomes["refused"], "the port closed with its last route: %v", res.Outcomes)
	st := e.balanced()
	assert.EqualValues(t, 1, st.Ledger.Outcomes["dispatch_timeout"], "one leaked-handle event: %+v", st.Ledger)
	assert.Contains(t, e.daemon.Output(), daemon.LeakedHandleMessage)
	assert.Empty(t, st.Routes, "the worker is dropped")
	_, err := net.DialTimeout("tcp", e.addr(), time.Second)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the port is closed")
	w.WaitOutput(t, "evicted by the port-sharing daemon", step)

	ev := readEvents(t, events)
	require.NotEmpty(t, ev)
	assert.Equal(t, faults.Start, ev[0].Phase)
	assert.Equal(t, "slow-accept:delay=1s", ev[0].Fault)
	t.Logf("compat: %v; ledger %v", res.Outcomes, st.Ledger.Outcomes)
}

// Under reclaim the same slow worker costs only the hand-offs that timed
// out: each is counted, the worker stays, and no client waits longer than
// the daemon's timeouts allow.
func TestSlowAcceptUnderReclaimKeepsTheWorkerAndNoClientWaits(t *testing.T) {
	e := startEnv(t, "dispatch_failure_policy: reclaim\ndispatch_timeout: 300ms\nqueue_timeout: 500ms\n")
	e.faultyWorker("orders", nil, "slow-accept:delay=1s")
	res := e.netTCPLoad(10, 3*time.Second)

	st := e.balanced()
	assert.Positive(t, st.Ledger.Outcomes["dispatch_timeout"], "leaked-handle events counted: %+v", st.Ledger)
	assert.Contains(t, e.daemon.Output(), daemon.LeakedHandleMessage)
	require.Len(t, st.Routes, 1, "the worker stays")
	assert.Positive(t, res.Outcomes[loadgen.OK], "the worker keeps serving: %v", res.Outcomes)
	assert.Zero(t, res.Outcomes["refused"])
	assert.Zero(t, res.Outcomes["timeout"], "nobody hangs until the client gives up")
	// A client waits at most queue_timeout in the queue, then
	// dispatch_timeout for the worker, then is answered.
	// (Waiting for the slow worker instead would take about 1.3s.)
	assert.Less(t, time.Duration(res.Latency.Max)*time.Microsecond, 800*time.Millisecond+300*time.Millisecond,
		"longest wait %dµs", res.Latency.Max)
	t.Logf("reclaim: %v; ledger %v; max %d µs", res.Outcomes, st.Ledger.Outcomes, res.Latency.Max)
}

// A worker that crashes with hand-offs in flight leaves nothing behind:
// the ledger balances and the daemon's descriptors come back.
func TestCrashWithHandoffsInFlightBalancesTheLedger(t *testing.T) {
	e := startEnv(t, "dispatch_timeout: 5s\nqueue_timeout: 1s\n")
	_, base := e.servedOnce("warm", "/warm/")
	w, events := e.faultyWorker("orders", []string{"--max-inflight", "4"}, "crash:after=5,inflight=400ms")
	// Sample the daemon's hand-offs in flight until the worker dies.
	inflight := make(chan int, 1)
	go func() {
		most := 0
		for !w.Exited() {
			if st := fetchStatusOrNil(e.socket); st != nil {
				most = max(most, st.Inflight)
			}
			time.Sleep(20 * time.Millisecond)
		}
		inflight <- most
	}()
	res := e.netTCPLoad(20, 2*time.Second)

	w.Wait(step)
	require.True(t, w.Exited())
	assert.Equal(t, syscall.SIGKILL, w.Cmd.ProcessState.Sys().(syscall.WaitStatus).Signal(), "killed by its own SIGKILL")
	st := e.balanced()
	assert.EqualValues(t, 4, res.Outcomes[loadgen.OK], "four served before the fifth: %v", res.Outcomes)
	assert.Equal(t, 4, <-inflight, "the worker's whole credit was in flight when it died")
	assert.Positive(t, st.Ledger.Outcomes["queue_timeout"], "the hand-offs in flight were queued again, then expired: %v", st.Ledger.Outcomes)
	assert.Positive(t, st.Ledger.Outcomes["dispatched"])
	testutil.Eventually(t, step, func() bool { return testutil.FDCount(t, e.daemon.PID()) <= base+1 },
		"daemon fds back to baseline %d (+1 for the port), now %d", base, testutil.FDCount(t, e.daemon.PID()))
	ev := readEvents(t, events)
	require.Len(t, ev, 2)
	assert.Equal(t, faults.Instant, ev[1].Phase)
	assert.Contains(t, ev[1].Detail, "SIGKILL")
	t.Logf("crash: %v; ledger %v", res.Outcomes, st.Ledger.Outcomes)
}

// daemonProcess is the env's daemon as daemon faults see it.
type daemonProcess struct{ e *env }

func (p daemonProcess) Pid() int { return p.e.daemon.PID() }

// Restart runs on the injector's goroutine, so it reports failures as
// errors instead of failing the test.
func (p daemonProcess) Restart(downtime time.Duration) error {
	p.e.daemon.Signal(syscall.SIGTERM)
	if code := p.e.daemon.Wait(10 * time.Second); code != 0 {
		return fmt.Errorf("daemon exited %d on SIGTERM", code)
	}
	time.Sleep(downtime)
	d := testutil.Start(p.e.t, nil, "serve", "--config", p.e.cfg)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.Output(), "portshare daemon serving"); {
		if time.Now().After(deadline) || d.Exited() {
			return fmt.Errorf("the daemon did not start again: %s", d.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.e.daemon = d
	return nil
}

// injector returns an injector of daemon faults for the env's daemon.
func (e *env) injector(specs ...string) (*faults.Injector, *faults.Log) {
	e.t.Helper()
	parsed, err := faults.ParseAll(faults.Daemon, specs)
	require.NoError(e.t, err)
	log := faults.NewLog("test", nil, nil)
	in, err := faults.NewInjector(daemonProcess{e}, nil, parsed, log)
	require.NoError(e.t, err)
	return in, log
}

// A paused daemon accepts nothing; with a small listen_backlog a storm
// overflows the accept queue, which the kernel's own counters show, and
// clients see it as SYN retries (a connect second or more) or connect
// timeouts.
func TestPauseWithStormOverflowsTheListenBacklog(t *testing.T) {
	e := startEnv(t, "listen_backlog: 4\nmax_pending_accepts: 1\nreceive_timeout: 1s\n")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	before, err := faults.ReadTCPExt(e.daemon.PID())
	require.NoError(t, err)
	in, log := e.injector("pause:at=200ms,for=1500ms")
	done := make(chan error, 1)
	go func() { done <- in.Run(context.Background(), time.Now()) }()
	_, res := loadRun(t, "--target", fmt.Sprintf("tcp://127.0.0.1:%d", e.port), "--rate", "200", "--duration", "2s", "--connect-timeout", "1500ms")
	require.NoError(t, <-done)
	after, err := faults.ReadTCPExt(e.daemon.PID())
	require.NoError(t, err)
	delta := after.Sub(before)

	assert.Positive(t, delta.ListenOverflows(), "the kernel counted accept-queue overflows: %v", delta)
	assert.Positive(t, res.TCPExt["ListenOverflows"], "and the load's result shows them")
	connect := res.Phases[loadgen.PhaseConnect]
	assert.True(t, res.Outcomes["connect_timeout"] > 0 || connect.Max >= 900_000,
		"clients saw SYN retries or timeouts: %v, connect max %dµs", res.Outcomes, connect.Max)
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Equal(t, []faults.Phase{faults.Start, faults.End}, []faults.Phase{ev[0].Phase, ev[1].Phase})
	assert.InDelta(t, 1500*time.Millisecond, ev[1].Time.Sub(ev[0].Time), float64(200*time.Millisecond))
	st := e.balanced()
	t.Logf("pause: ListenOverflows +%d ListenDrops +%d; outcomes %v; connect p50 %dµs p99 %dµs max %dµs; ledger %v",
		delta.ListenOverflows(), delta.ListenDrops(), res.Outcomes, connect.P50, connect.P99, connect.Max, st.Ledger.Outcomes)
}

// With RLIMIT_NOFILE lowered under it, the daemon pauses accepting
// instead of spinning on EMFILE, and resumes when the limit is back.
func TestNofilePausesAcceptingWithoutSpinning(t *testing.T) {
	e := startEnv(t, "receive_timeout: 700ms\n")
	e.servedOnce("orders", "/orders/")
	in, log := e.injector("nofile:for=1500ms")
	done := make(chan error, 1)
	go func() { done <- in.Run(context.Background(), time.Now()) }()
	testutil.Eventually(t, step, func() bool { return len(log.Events()) == 1 }, "limit lowered")
	conns := make([]net.Conn, 0, 24)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 24 {
		c, err := net.Dial("tcp", e.addr())
		require.NoError(t, err) // the kernel completes the handshake; the daemon cannot accept most
		conns = append(conns, c)
	}
	ticks := cpuTicks(t, e.daemon.PID())
	time.Sleep(time.Second)
	used := cpuTicks(t, e.daemon.PID()) - ticks
	assert.Less(t, used, 20, "daemon CPU while out of descriptors: %d ticks in 1s", used)
	require.NoError(t, <-done)

	testutil.Eventually(t, 10*time.Second, func() bool { return e.status().Ledger.Accepted == 25 }, "all 24 accepted once the limit is back")
	st := e.balanced()
	assert.EqualValues(t, 24, st.Ledger.Outcomes["receive_timeout"])
	assert.Positive(t, st.Counters["accept_pauses_total"].(map[string]any)["emfile"])
	_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "after")
	require.NoError(t, err)
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Contains(t, ev[0].Detail, "RLIMIT_NOFILE")
	assert.Equal(t, "undone", ev[1].Detail)
	t.Logf("nofile: %s; daemon CPU %d ticks in 1s; ledger %v", ev[0].Detail, used, st.Ledger.Outcomes)
}

// A restarted daemon gets its workers back: they register again by
// themselves.
func TestRestartFaultWorkersComeBack(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	old := e.daemon.PID()
	in, log := e.injector("restart:for=200ms")
	require.NoError(t, in.Run(context.Background(), time.Now()))
	assert.NotEqual(t, old, e.daemon.PID())
	testutil.Eventually(t, 10*time.Second, func() bool { return len(e.status().Routes) == 1 }, "worker re-registered")
	got, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "again")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:again"}, got)
	ev := log.Events()
	require.Len(t, ev, 2)
	assert.Contains(t, ev[1].Detail, fmt.Sprintf("pid %d", e.daemon.PID()))
}

// A run cut short still undoes its faults: a paused daemon is continued.
func TestInjectorUndoesFaultsWhenStopped(t *testing.T) {
	e := startEnv(t, "")
	in, log := e.injector("pause:for=1h")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, time.Now()) }()
	testutil.Eventually(t, step, func() bool { return len(log.Events()) == 1 }, "paused")
	cancel()
	require.NoError(t, <-done)
	e.status() // answers: running again
	assert.Equal(t, faults.End, log.Events()[1].Phase)
}

// --fault-epoch gives the worker the run's clock: a fault due 30 minutes
// after an epoch an hour ago is in effect from the start.
func TestWorkerFaultEpoch(t *testing.T) {
	e := startEnv(t, "")
	epoch := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	_, events := e.faultyWorker("orders", []string{"--fault-epoch", epoch}, "refuse:at=30m")
	_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x")
	require.Error(t, err, "refused: the fault is already in effect")
	ev := readEvents(t, events)
	require.NotEmpty(t, ev)
	assert.Equal(t, faults.Start, ev[0].Phase)

	code, _, errs := cli("worker", "--control-socket", e.socket, "--name", "x", "--route", e.route("net.tcp://+:%d/x/"), "--fault-epoch", "yesterday")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "want an RFC 3339 time")
}
