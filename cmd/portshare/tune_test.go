package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/scenarios"
	"github.com/portshare/portshare/scenarios/results"
	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/testutil"
)

// tinyScenario sweeps the policy over two cells of a one-second load on
// slow-accepting workers, with a pause of the daemon in the middle.
const tinyScenario = `name: tiny
description: Two cells, one second of load each.
time_scale: "1s here is 1s"
daemon:
  base: {dispatch_timeout: 2s, receive_timeout: 2s, queue_timeout: 2s, listen_backlog: 64}
  sweep: {dispatch_failure_policy: [compat, reclaim]}
workers:
  - {name: orders, route: "net.tcp://+:{port}/orders/", count: 2, faults: ["slow-accept:delay=5ms"]}
load:
  - {target: "net.tcp://{host}:{port}/orders/", rate: 20, duration: 1s, client_faults: [{spec: silent, ratio: 0.1}]}
faults: ["pause:at=300ms,for=700ms"]
drain: 5s
assert:
  - {where: {dispatch_failure_policy: reclaim}, expect: ["leaked_handles == 0", "error_rate <= 0.2"]}
  - {expect: ["sessions >= 10"]}
`

// tuneEnv lets the tune command, run in this process, start the test
// binary as its portshare children.
func tuneEnv(t *testing.T) string {
	t.Setenv(testutil.ChildEnv, "1")
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.yaml")
	require.NoError(t, os.WriteFile(path, []byte(tinyScenario), 0o644))
	return path
}

// A two-cell sweep runs end to end against real daemon, worker and load
// processes: a manifest and a run file per cell, each run with its load
// result, samples, fault events, balanced ledger and flat descriptors.
func TestTuneTinySweepEndToEnd(t *testing.T) {
	file := tuneEnv(t)
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := cli("tune", file, "--out", out)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "scenario tiny: 2 cells × 1 repetition = 2 runs")
	assert.Contains(t, stdout, "dispatch_failure_policy=reclaim")

	m, runs, err := results.ReadDir(out)
	require.NoError(t, err)
	assert.Equal(t, "tiny", m.Scenario)
	assert.Len(t, m.Cells, 2)
	assert.False(t, m.Interrupted)
	assert.Equal(t, uint64(1), m.Seed)
	assert.NotEmpty(t, m.Sysctls["net.core.somaxconn"])
	assert.Equal(t, tinyScenario, m.ScenarioText)
	require.Len(t, runs, 2)
	for i, r := range runs {
		assert.Equal(t, i, r.Cell)
		assert.Empty(t, r.Error, "cell %d", i)
		assert.Empty(t, r.Findings, "cell %d: no ledger or fd violation", i)
		require.Len(t, r.Load, 1)
		require.NotNil(t, r.Load[0])
		assert.InDelta(t, 18, r.Metrics["sessions"], 4, "normal sessions of cell %d (90%% of 20)", i)
		assert.Contains(t, r.Load[0].ClientFaults, "silent")
		require.Len(t, r.Ledgers, 1)
		l := r.Ledgers[0]
		assert.Zero(t, l.Open)
		assert.True(t, r.FDs.Checked)
		assert.LessOrEqual(t, r.FDs.After, r.FDs.Allowed)
		assert.NotEmpty(t, r.Samples, "the daemon was sampled")
		// While paused it cannot answer; the kernel's queue, read from
		// /proc, holds what arrived meanwhile (20/s for 700 ms).
		queuedWhilePaused := 0
		for _, s := range r.Samples {
			if s.Unanswered {
				queuedWhilePaused = max(queuedWhilePaused, s.ListenQueue)
			}
		}
		assert.Positive(t, queuedWhilePaused, "cell %d: a paused daemon's listen queue was sampled: %+v", i, r.Samples)
		names := map[string]int{}
		for _, e := range r.Events {
			names[e.Name]++
		}
		assert.Equal(t, 2, names["pause"], "pause start and end: %v", r.Events)
		assert.GreaterOrEqual(t, names["slow-accept"], 2, "the workers' fault events were collected")
		var cfg config.Config
		require.NoError(t, json.Unmarshal(r.Config, &cfg))
		assert.Equal(t, config.Policy([]string{"compat", "reclaim"}[i]), cfg.DispatchFailurePolicy, "the daemon ran the cell's settings")
		assert.Equal(t, 2*time.Second, cfg.DispatchTimeout)
	}
	assert.Len(t, runs[0].Checks, 1, "cell 0 has only the every-cell expectation")
	assert.Len(t, runs[1].Checks, 3)
	for _, c := range runs[1].Checks {
		assert.True(t, c.Pass, "%s was %g", c.Expect, c.Value)
	}
	logs, err := filepath.Glob(filepath.Join(out, "logs", "cell-001-rep-1", "*.log"))
	require.NoError(t, err)
	assert.Len(t, logs, 4, "daemon, two workers and the load each have a log: %v", logs)

	// The sweep ends with its verdict and its report.
	assert.Contains(t, stdout, "verdict:\n  - ")
	assert.Contains(t, stdout, "report: "+filepath.Join(out, ReportFile))
	page, err := os.ReadFile(filepath.Join(out, ReportFile))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(page), "<!DOCTYPE html>"))
	assert.Contains(t, string(page), "<h1>tiny</h1>")
}

// --cell runs one cell, --set changes the sweep, --check turns a failed
// expectation into exit 1; the run file still says what happened.
func TestTuneCellSetAndCheck(t *testing.T) {
	file := tuneEnv(t)
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := cli("tune", file, "--out", out, "--cell", "1", "--set", "load.duration=500ms",
		"--set", "max_pending_accepts=1,2")
	// Cells: policy × max_pending_accepts; cell 1 is compat with 2.
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	_, runs, err := results.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, "dispatch_failure_policy=compat max_pending_accepts=2", runs[0].Label)
	assert.InDelta(t, 9, runs[0].Metrics["sessions"], 3)

	out2 := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr = cli("tune", file, "--out", out2, "--cell", "0", "--set", "load.duration=300ms", "--set", "load.rate=5", "--check")
	assert.Equal(t, 1, code, "sessions >= 10 cannot hold for 5/s over 300ms:\n%s\n%s", stdout, stderr)
	assert.Contains(t, stderr, "--check: 1 of 1 runs failed")
	assert.Contains(t, stdout, "sessions >= 10 was")
}

func TestTuneUsageErrors(t *testing.T) {
	file := tuneEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tune", "no-such-scenario"}, "no scenario file"},
		{[]string{"tune", file, "--set", "bogus=1"}, `unknown key "bogus"`},
		{[]string{"tune", file, "--set", "control_socket=/x"}, "set by the runner"},
		{[]string{"tune", file, "--cell", "7"}, "has cells 0 to 1"},
		{[]string{"tune", file, "--repetitions", "0"}, "--repetitions must be from 1 to 100"},
		{[]string{"tune", file, "extra"}, "takes at most one SCENARIO"},
	} {
		code, _, stderr := cli(tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want, "%v", tc.args)
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	}
	code, stdout, _ := cli("tune", "--list")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "ci-regression")
}

// Ctrl-C in the middle of a run tears it down: the tune process exits
// with the runs done so far recorded, and leaves no process, socket file
// or network namespace behind.
func TestTuneInterruptLeavesNothingBehind(t *testing.T) {
	for _, netns := range []bool{false, true} {
		t.Run(fmt.Sprintf("netns=%v", netns), func(t *testing.T) {
			if netns {
				if err := faults.Available(); err != nil {
					t.Skip(err)
				}
			}
			scenario := strings.Replace(tinyScenario, "duration: 1s", "duration: 30s", 1)
			if netns {
				scenario += "netns: true\n"
			}
			p, tmp, out := startTune(t, scenario)
			testutil.Eventually(t, 30*time.Second, func() bool {
				return fileExists(filepath.Join(out, "logs", "cell-000-rep-1", "load-0.log"))
			}, "the first run's load started")
			time.Sleep(300 * time.Millisecond)
			p.Signal(syscall.SIGINT)
			code := p.Wait(30 * time.Second)
			assert.Equal(t, 1, code, "interrupted: %s", p.Output())
			assert.Contains(t, p.Output(), "interrupted after 0 of 2 runs")

			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			assert.Empty(t, left, "the run's temporary directory (socket, config) is gone")
			assert.Empty(t, processesMentioning(t, tmp), "no daemon or worker of the run is still running")
			assert.Empty(t, processesMentioning(t, out), "no load of the run is still running")
			m, runs, err := results.ReadDir(out)
			require.NoError(t, err)
			assert.True(t, m.Interrupted)
			assert.Empty(t, runs, "an interrupted run leaves no run file")
			if netns {
				list, err := exec.Command("ip", "netns", "list").Output()
				require.NoError(t, err)
				assert.NotContains(t, string(list), fmt.Sprintf("ps-%d-", p.PID()), "the run's namespaces are gone")
			}
		})
	}
}

// startTune starts `portshare tune` on scenario as a child process with
// a short TMPDIR of its own (so the run's socket lives in it), and returns
// it with that directory and its results directory.
func startTune(t *testing.T, scenario string) (p *testutil.Proc, tmp, out string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "long.yaml")
	require.NoError(t, os.WriteFile(file, []byte(scenario), 0o644))
	tmp, err := os.MkdirTemp("/tmp", "pst")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	out = filepath.Join(dir, "results")
	return testutil.Start(t, []string{"TMPDIR=" + tmp}, "tune", file, "--out", out), tmp, out
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

// processesMentioning lists processes whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	var found []string
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		found = append(found, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return found
}

// restartScenario restarts the daemon under load; the workers register
// again by themselves.
const restartScenario = `name: restart
description: The daemon restarted in the middle of a load.
daemon:
  base: {dispatch_timeout: 2s, receive_timeout: 2s, queue_timeout: 2s, listen_backlog: 64}
workers:
  - {name: orders, route: "net.tcp://+:{port}/orders/", count: 2}
load:
  - {target: "net.tcp://{host}:{port}/orders/", rate: 20, duration: 3s, timeout: 3s}
faults: ["restart:at=500ms,for=200ms"]
drain: 5s
`

// A restart shows in the run file: a ledger per daemon process, counted
// once each in the metrics and the cumulative samples, the first one's
// as it exited, the stop and the start as events, and the descriptor
// check against the new process's baseline.
func TestTuneDaemonRestart(t *testing.T) {
	tuneEnv(t)
	file := filepath.Join(t.TempDir(), "restart.yaml")
	require.NoError(t, os.WriteFile(file, []byte(restartScenario), 0o644))
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := cli("tune", file, "--out", out)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	_, runs, err := results.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	r := runs[0]
	assert.Empty(t, r.Error)
	assert.Empty(t, r.Findings)
	require.Len(t, r.Ledgers, 2, "one ledger per daemon process")
	assert.NotEqual(t, r.Ledgers[0].PID, r.Ledgers[1].PID)
	var dispatched, accepted uint64
	for _, l := range r.Ledgers {
		assert.Positive(t, l.Accepted, "each daemon took part of the load: %+v", l)
		dispatched += l.Outcomes["dispatched"]
		accepted += l.Accepted
	}
	assert.Equal(t, float64(dispatched), r.Metrics["dispatched"], "summed over the daemons, once each")
	assert.LessOrEqual(t, r.Metrics["dispatched"], r.Metrics["sessions"], "a session is one connection: none counted twice")
	pids := map[int]bool{}
	var last uint64
	for _, s := range r.Samples {
		pids[s.PID] = true
		assert.GreaterOrEqual(t, s.Accepted, last, "accepted is cumulative across the restart (t=%g)", s.T)
		last = s.Accepted
	}
	assert.Len(t, pids, 2, "both daemons were sampled")
	assert.LessOrEqual(t, last, accepted, "the samples count each daemon once")
	assert.Greater(t, last, r.Ledgers[0].Accepted, "the samples add the daemons up")
	names := map[string]int{}
	for _, e := range r.Events {
		names[e.Name]++
	}
	assert.Equal(t, 1, names["daemon-stopped"], "%v", r.Events)
	assert.Equal(t, 1, names["daemon-started"], "%v", r.Events)
	assert.Equal(t, 2, names["restart"], "the fault's start and end")
	assert.True(t, r.FDs.Checked, "against the new daemon's baseline: %+v", r.FDs)
	assert.Contains(t, r.FDs.Note, "restarted")
	assert.LessOrEqual(t, r.FDs.After, r.FDs.Allowed)
	assert.Zero(t, r.Ledgers[0].Open, "the first daemon's ledger is its ledger at exit, from its log: %+v", r.Ledgers[0])
}

// Ctrl-C during a restart's downtime stops the run at once: the restart
// does not wait out its downtime nor start a daemon nobody needs.
func TestTuneInterruptDuringRestart(t *testing.T) {
	scenario := strings.Replace(restartScenario, "for=200ms", "for=60s", 1)
	scenario = strings.Replace(scenario, "duration: 3s", "duration: 60s", 1)
	p, tmp, out := startTune(t, scenario)
	log := filepath.Join(out, "logs", "cell-000-rep-1", "daemon.log")
	testutil.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "daemon stopped")
	}, "the restart stopped the first daemon")
	start := time.Now()
	p.Signal(syscall.SIGINT)
	code := p.Wait(30 * time.Second)
	assert.Equal(t, 1, code, "interrupted: %s", p.Output())
	assert.Less(t, time.Since(start), 10*time.Second, "the teardown did not wait out the downtime")
	assert.NoFileExists(t, filepath.Join(out, "logs", "cell-000-rep-1", "daemon-2.log"), "no second daemon was started")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "the run's temporary directory is gone")
	assert.Empty(t, processesMentioning(t, tmp), "no daemon or worker of the run is still running")
	assert.Empty(t, processesMentioning(t, out), "no load of the run is still running")
}

// The progress bar never wraps on a terminal: a wrapped line would leave
// its first part behind on every redraw.
func TestTuneProgressFitsTheTerminal(t *testing.T) {
	assert.Equal(t, "short", fitLine("short", 80))
	assert.Equal(t, "short", fitLine("short", 0), "width unknown")
	long := strings.Repeat("x", 100)
	assert.Equal(t, strings.Repeat("x", 38)+"…", fitLine(long, 40))
	assert.Len(t, []rune(fitLine(long, 40)), 39, "the last column stays free")
	assert.Len(t, []rune(fitLine(strings.Repeat("x", 40), 40)), 39)
	assert.Equal(t, strings.Repeat("x", 39), fitLine(strings.Repeat("x", 39), 40))
}

// A scenario that needs what the machine lacks (namespaces without
// root, netem without sch_netem) fails at once with the reason, before
// any run.
func TestTuneRefusesWhatTheMachineCannotDo(t *testing.T) {
	tuneEnv(t)
	err := faults.NetemAvailable()
	if err == nil {
		t.Skip("this machine can run netem")
	}
	file := filepath.Join(t.TempDir(), "netem.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`name: netem-try
workers: [{route: "net.tcp://+:{port}/orders/"}]
load: [{target: "net.tcp://{host}:{port}/orders/", rate: 5, duration: 1s}]
faults: ["netem:delay=20ms"]
`), 0o644))
	out := filepath.Join(t.TempDir(), "results")
	code, _, stderr := cli("tune", file, "--out", out)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "scenario netem-try uses netem: ")
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	assert.NoDirExists(t, out, "no run was started")
}

// A worker group with restart: a crashed worker comes back after the
// delay, without its crash fault, registers again and serves; its exit
// is an event, not a finding, and the fd check counts it back in.
func TestTuneRestartsACrashedWorker(t *testing.T) {
	tuneEnv(t)
	file := filepath.Join(t.TempDir(), "crash.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`name: crash-restart
daemon:
  base: {dispatch_timeout: 2s, receive_timeout: 2s, queue_timeout: 2s}
workers:
  - {name: orders, route: "net.tcp://+:{port}/orders/", count: 1, faults: ["crash:after=5", "slow-accept:delay=1ms"], restart: 200ms}
load:
  - {target: "net.tcp://{host}:{port}/orders/", rate: 20, duration: 2s, timeout: 3s}
drain: 5s
assert:
  - {expect: ["count(ok) >= 20"]}
`), 0o644))
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := cli("tune", file, "--out", out, "--check")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	_, runs, err := results.ReadDir(out)
	require.NoError(t, err)
	r := runs[0]
	assert.Empty(t, r.Findings)
	names := map[string][]string{}
	for _, e := range r.Events {
		names[e.Name] = append(names[e.Name], e.Source)
	}
	assert.Equal(t, []string{"worker-orders-1"}, names["worker-exit"], "only the first process crashed: %v", r.Events)
	assert.Equal(t, []string{"worker-orders-1-r1"}, names["worker-restart"])
	assert.Contains(t, names["slow-accept"], "worker-orders-1-r1", "the restarted worker kept its other faults")
	assert.True(t, r.FDs.Checked)
	assert.LessOrEqual(t, r.FDs.After, r.FDs.Allowed)
	last := r.Samples[len(r.Samples)-1]
	assert.Equal(t, 1, last.Workers, "the restarted worker registered again")
	assert.FileExists(t, filepath.Join(out, "logs", "cell-000-rep-1", "worker-orders-1-r1.log"))
}

// Cells of one sweep run by separate invocations (machines) may share a
// results directory; nothing already there is overwritten, and another
// sweep is kept out.
func TestTuneCellsIntoOneDirectory(t *testing.T) {
	file := tuneEnv(t)
	out := filepath.Join(t.TempDir(), "results")
	short := []string{"--set", "load.duration=300ms"}
	tune := func(args ...string) (int, string) {
		code, _, stderr := cli(append(append([]string{"tune", file, "--out", out}, short...), args...)...)
		return code, stderr
	}
	code, stderr := tune("--cell", "1")
	require.Equal(t, 0, code, stderr)
	code, stderr = tune("--cell", "1")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "already holds cell 1, repetition 1")
	code, stderr = tune("--cell", "0", "--cell", "0")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--cell 0 given twice")
	code, stderr = tune("--cell", "0", "--seed", "2")
	assert.Equal(t, 2, code, "another seed is another sweep")
	assert.Contains(t, stderr, "results of another sweep")
	code, stderr = tune()
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "already holds results")
	code, stderr = tune("--cell", "0")
	require.Equal(t, 0, code, stderr)

	m, runs, err := results.ReadDir(out)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1}, m.Only, "the manifest covers both invocations")
	require.Len(t, runs, 2)
	assert.Equal(t, m.Sweep, runs[0].Sweep)
	assert.Len(t, m.Sweep, 16)
}

// On a terminal the bar redraws every second while a run goes on, and
// stops redrawing at the end.
func TestTuneProgressRedrawsDuringARun(t *testing.T) {
	var buf testutil.Buffer
	p := &tuneProgress{w: &buf, tty: true, width: 200}
	p.Begin(&results.Manifest{Scenario: "s", Cells: make([]results.Cell, 2), Repetitions: 1}, 2)
	p.RunStarted(scenarios.Cell{Index: 0, Values: []scenarios.Setting{{Key: "k", Value: "v"}}}, 1)
	time.Sleep(1300 * time.Millisecond)
	assert.GreaterOrEqual(t, strings.Count(buf.String(), "\r\033[K"), 2, "drawn at the start and again a second later")
	assert.Contains(t, buf.String(), "0/2 runs")
	assert.Contains(t, buf.String(), "cell 0 rep 1: k=v (1s)")
	p.RunDone(&results.Run{Metrics: map[string]float64{"leaked_handles": 3}})
	p.end()
	assert.Contains(t, buf.String(), "1/2 runs")
	assert.Contains(t, buf.String(), "leaked handles 3")
	n := len(buf.String())
	time.Sleep(1100 * time.Millisecond)
	assert.Equal(t, n, len(buf.String()), "no redraw after the end")
}
