package runner

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
	"github.com/portshare/portshare/sharer/daemon"
)

// The runner's runs are tested end to end, with real processes, in
// cmd/portshare (tune_test.go); these are its pieces.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A temporary directory too deep for a Unix socket path moves to /tmp.
func TestTempDirKeepsTheSocketPathShort(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	require.NoError(t, os.MkdirAll(deep, 0o755))
	t.Setenv("TMPDIR", deep)
	dir, err := tempDir()
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	assert.Less(t, len(filepath.Join(dir, "portshare.sock")), 108)
	left, _ := os.ReadDir(deep)
	assert.Empty(t, left, "the first attempt was removed")

	t.Setenv("TMPDIR", t.TempDir())
	dir2, err := tempDir()
	require.NoError(t, err)
	defer os.RemoveAll(dir2)
	assert.True(t, strings.HasPrefix(dir2, os.Getenv("TMPDIR")), "a short TMPDIR is used")
}

func TestExitText(t *testing.T) {
	assert.Equal(t, "exit 0", exitText(nil))
	err := exec.Command("sh", "-c", "exit 3").Run()
	assert.Equal(t, "exit 3", exitText(err))
	err = exec.Command("sh", "-c", "kill -KILL $$").Run()
	assert.Equal(t, "killed by SIGKILL", exitText(err))
}

func TestMachineAndSysctls(t *testing.T) {
	m := machine()
	assert.Positive(t, m.CPUs)
	assert.NotEmpty(t, m.Kernel)
	s := sysctls()
	for _, k := range Sysctls {
		assert.NotEmpty(t, s[k], k)
	}
}

const oneCell = `name: one
description: One cell.
daemon:
  base: {dispatch_timeout: 2s}
workers:
  - {route: "net.tcp://+:{port}/orders/"}
load:
  - {target: "net.tcp://{host}:{port}/orders/", rate: 10, duration: 1s}
drain: 1s
`

// fakeDaemon is a "portshare" that starts and never answers: it writes
// its pid to pidFile and sleeps.
func fakeDaemon(t *testing.T) (exe, pidFile string) {
	dir := t.TempDir()
	exe, pidFile = filepath.Join(dir, "portshare"), filepath.Join(dir, "pids")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\necho $$ >> \"$FAKE_PIDS\"\nexec sleep 600\n"), 0o755))
	return exe, pidFile
}

// alive lists the pids of pidFile whose process is still running.
func alive(t *testing.T, pidFile string) []int {
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err, "the fake daemon was started")
	var live []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		if syscall.Kill(pid, 0) == nil {
			live = append(live, pid)
		}
	}
	return live
}

func shortReady(t *testing.T, d time.Duration) {
	old := readyTimeout
	readyTimeout = d
	t.Cleanup(func() { readyTimeout = old })
}

// A daemon that starts but never serves is recorded as a setup error,
// and stopped: it does not outlive its run (nor hold the port).
func TestTuneDaemonThatNeverServesIsStopped(t *testing.T) {
	shortReady(t, 500*time.Millisecond)
	exe, pids := fakeDaemon(t)
	s, err := scenarios.Parse("one.yaml", []byte(oneCell))
	require.NoError(t, err)
	r := &Runner{Exe: exe, Env: []string{"FAKE_PIDS=" + pids}, Out: t.TempDir()}
	m, runs, err := r.Run(context.Background(), s, nil, nil)
	require.NoError(t, err)
	assert.False(t, m.Interrupted)
	require.Len(t, runs, 1)
	assert.Contains(t, runs[0].Error, "the daemon did not start")
	assert.False(t, runs[0].Pass)
	assert.Empty(t, alive(t, pids), "the daemon was stopped")
}

// Ctrl-C while the daemon starts leaves no daemon and no run file.
func TestTuneInterruptWhileTheDaemonStarts(t *testing.T) {
	shortReady(t, time.Minute)
	exe, pids := fakeDaemon(t)
	s, err := scenarios.Parse("one.yaml", []byte(oneCell))
	require.NoError(t, err)
	out := t.TempDir()
	r := &Runner{Exe: exe, Env: []string{"FAKE_PIDS=" + pids}, Out: out}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	m, runs, err := r.Run(ctx, s, nil, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 15*time.Second)
	assert.True(t, m.Interrupted)
	assert.Empty(t, runs)
	files, _ := filepath.Glob(filepath.Join(out, "cell-*.json"))
	assert.Empty(t, files, "an interrupted run leaves no run file")
	assert.Empty(t, alive(t, pids), "the daemon was stopped")
}

// A child that exited on its own before the runner stopped it is not
// taken for one the runner stopped: its watcher still reports it.
func TestStopOfAnExitedChildIsNotExpected(t *testing.T) {
	dir := t.TempDir()
	st := &starter{exe: "/bin/sh", logs: dir}
	c, err := st.start("quick", "", "-c", "exit 3")
	require.NoError(t, err)
	<-c.Done()
	assert.Equal(t, "exit 3", exitText(c.Stop(syscall.SIGTERM, time.Second)))
	assert.False(t, c.expected(), "it exited before it was asked to")

	c, err = st.start("long", "", "-c", "exec sleep 600")
	require.NoError(t, err)
	c.Stop(syscall.SIGTERM, time.Second)
	assert.True(t, c.expected())
}

// The daemon's open is accepted − outcomes in unsigned arithmetic, so
// accepted = outcomes + open always holds on paper: the check must look
// for more outcomes than accepts.
func TestTuneLedgerBalance(t *testing.T) {
	ok := daemon.LedgerSnapshot{Accepted: 10, Open: 2, Outcomes: map[string]uint64{"dispatched": 7, "no_route": 1}}
	assert.Empty(t, ledgerImbalance(ok))
	double := daemon.LedgerSnapshot{Accepted: 10, Open: math.MaxUint64, Outcomes: map[string]uint64{"dispatched": 11}}
	assert.Equal(t, "accepted 10, outcomes 11, open -1", ledgerImbalance(double))
	wrongOpen := daemon.LedgerSnapshot{Accepted: 10, Open: 0, Outcomes: map[string]uint64{"dispatched": 9}}
	assert.NotEmpty(t, ledgerImbalance(wrongOpen))
}

// Throughput is ok sessions per second of load: loads one after the
// other add their windows, loads side by side count once.
func TestTuneLoadWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := func(at, window float64) *loadgen.Result {
		return &loadgen.Result{Started: t0.Add(time.Duration(at * float64(time.Second))), Window: loadgen.Seconds(window)}
	}
	assert.InDelta(t, 5, loadWindow([]*loadgen.Result{l(0, 5), l(1.5, 1)}), 1e-9, "a burst inside the steady load")
	assert.InDelta(t, 10, loadWindow([]*loadgen.Result{l(5, 5), nil, l(0, 5)}), 1e-9, "two loads one after the other")
	assert.InDelta(t, 6, loadWindow([]*loadgen.Result{l(0, 4), l(2, 4)}), 1e-9, "overlapping")
	assert.Zero(t, loadWindow(nil))
}

// A status fetched before another but kept after it does not move a
// daemon's ledger back.
func TestTuneKeepIgnoresAnOlderStatus(t *testing.T) {
	o := &one{final: map[int]*daemon.Status{}}
	st := func(pid int, accepted, dispatched uint64) *daemon.Status {
		return &daemon.Status{PID: pid, Ledger: daemon.LedgerSnapshot{Accepted: accepted, Outcomes: map[string]uint64{"dispatched": dispatched}}}
	}
	o.keep(st(1, 10, 8))
	o.keep(st(1, 9, 9)) // older: fewer accepted
	o.keep(st(2, 3, 3))
	o.keep(st(1, 10, 7)) // older: fewer outcomes
	assert.Equal(t, []int{1, 2}, o.order)
	assert.Equal(t, uint64(13), o.totals(func(s *daemon.Status) uint64 { return s.Ledger.Accepted }))
	assert.Equal(t, uint64(11), o.totals(func(s *daemon.Status) uint64 { return s.Ledger.Outcomes["dispatched"] }))
	o.keep(st(1, 12, 12))
	assert.Equal(t, uint64(15), o.totals(func(s *daemon.Status) uint64 { return s.Ledger.Accepted }))
}

// A restarted daemon's ledger at exit comes from its last log line.
func TestStoppedLedgerFromTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	log := `time=2026-11-25T01:39:02.100Z level=INFO msg="portshare daemon serving" ports=[]
time=2026-11-25T01:39:02.271Z level=INFO msg="portshare daemon stopped" ledger.accepted=30 ledger.open=0 ledger.dispatched=28 ledger.shutdown=2
`
	require.NoError(t, os.WriteFile(path, []byte(log), 0o644))
	l, ok := stoppedLedger(path)
	require.True(t, ok)
	assert.Equal(t, uint64(30), l.Accepted)
	assert.Equal(t, uint64(0), l.Open)
	assert.Equal(t, map[string]uint64{"dispatched": 28, "shutdown": 2}, l.Outcomes)

	require.NoError(t, os.WriteFile(path, []byte(log[:strings.Index(log, "\n")+1]), 0o644))
	_, ok = stoppedLedger(path)
	assert.False(t, ok, "no stop line: the last status stands")
	_, ok = stoppedLedger(filepath.Join(t.TempDir(), "missing.log"))
	assert.False(t, ok)
}

// Only the end of a log is read: the daemon logs a line per leaked
// handle, and a run may last an hour.
func TestLogTailReadsTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	leak := func(i int) string {
		return fmt.Sprintf(`time=2026-11-25T01:39:02.100Z level=WARN msg="leaked handle" n=%d`, i)
	}
	const stopped = `time=2026-11-25T01:39:02.271Z level=INFO msg="portshare daemon stopped" ledger.accepted=30 ledger.open=0 ledger.dispatch_timeout=30`
	var b strings.Builder
	for i := range 20000 { // well over 64 KiB
		b.WriteString(leak(i) + "\n")
	}
	b.WriteString(stopped + "\n")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	lines, err := lastLines(path)
	require.NoError(t, err)
	assert.Less(t, len(strings.Join(lines, "\n")), logTail)
	assert.True(t, strings.HasPrefix(lines[0], "time="), "the line cut short is dropped: %q", lines[0])
	l, ok := stoppedLedger(path)
	require.True(t, ok)
	assert.Equal(t, map[string]uint64{"dispatch_timeout": 30}, l.Outcomes)
	assert.Equal(t, leak(19999)+" | "+stopped, Tail(path, 2))

	require.NoError(t, os.WriteFile(path, []byte("one\ntwo\n\n"), 0o644))
	assert.Equal(t, "one | two", Tail(path, 3))
	assert.Equal(t, "two", Tail(path, 1))
	assert.Empty(t, Tail(filepath.Join(t.TempDir(), "missing.log"), 2))
}

// Evaluating a run merges its loads' session latencies without touching
// the loads' own histograms (Histogram returns the one it cached).
func TestEvaluateLeavesTheLoadsHistogramsAlone(t *testing.T) {
	load := func(values ...int64) *loadgen.Result {
		h := hdr.New(1, 3_600_000_000, 3)
		for _, v := range values {
			require.NoError(t, h.RecordValue(v))
		}
		enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
		require.NoError(t, err)
		return &loadgen.Result{Outcomes: map[string]int64{"ok": int64(len(values))},
			Phases: map[string]*loadgen.Latency{loadgen.PhaseSession: {Count: int64(len(values)), Hist: string(enc)}}}
	}
	run := &results.Run{Load: []*loadgen.Result{load(1000, 1000), load(5000, 5000, 5000)},
		Outcomes: map[string]int64{}, Metrics: map[string]float64{}}
	o := &one{s: &scenarios.Scenario{}, run: run, final: map[int]*daemon.Status{}}
	o.evaluate()
	assert.Equal(t, 5.0, run.Metrics["sessions"])
	assert.InDelta(t, 5, run.Metrics["p50_ms"], 0.01, "the median of both loads")
	assert.InDelta(t, 5, run.Metrics["max_ms"], 0.01)
	for i, want := range []int64{2, 3} {
		h, err := run.Load[i].Phases[loadgen.PhaseSession].Histogram()
		require.NoError(t, err)
		assert.Equal(t, want, h.TotalCount(), "load %d's histogram", i)
	}
	h, _ := run.Load[0].Phases[loadgen.PhaseSession].Histogram()
	assert.Equal(t, int64(1000), h.Max(), "load 0 held only its own sessions")
}

// Every process of a run draws its own seed; a repetition draws afresh;
// another --seed gives another sweep's worth; none of them meet.
func TestSeedsOfProcessesRepetitionsAndSweeps(t *testing.T) {
	seen := map[uint64]string{}
	for _, sweep := range []uint64{0, 2} {
		for rep := 1; rep <= 3; rep++ {
			o := &one{r: &Runner{Seed: sweep}, rep: rep}
			for n := 1; n <= 256; n++ {
				s := o.seed(n)
				where := fmt.Sprintf("seed %d rep %d process %d", sweep, rep, n)
				require.NotContains(t, seen, s, "%s repeats %s", where, seen[s])
				seen[s] = where
			}
		}
	}
	assert.Equal(t, uint64(1), (&one{r: &Runner{}, rep: 1}).seed(1), "no --seed is --seed 1")
	assert.Equal(t, (&one{r: &Runner{Seed: 1}, rep: 2}).seed(3), (&one{r: &Runner{}, rep: 2}).seed(3))
}
