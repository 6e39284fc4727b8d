package scenarios

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
)

// parseFile parses a file of testdata and fails the test if it is bad.
func parseFile(t *testing.T, name string) *Scenario {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s, err := Parse(path, data)
	require.NoError(t, err)
	return s
}

func specs(list []faults.Spec) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.String())
	}
	return out
}

func TestParseFull(t *testing.T) {
	s := parseFile(t, "full.yaml")
	data, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join("testdata", "full.yaml"), s.File)
	assert.Equal(t, data, s.Text)
	assert.Equal(t, "full-example", s.Name)
	assert.Equal(t, "Every key a scenario may have. Two sentences.", s.Description)
	assert.Equal(t, "one second here is one second there", s.TimeScale)

	// Canonical values: 1000ms is 1s, 60s is 1m0s, a list is JSON.
	assert.Equal(t, []Setting{
		{"dispatch_timeout", "1s"},
		{"receive_timeout", "2s"},
		{"max_pending_connections", "200"},
		{"allow_accounts", `["root"]`},
		{"workers.web.max_inflight", "8"},
	}, s.Base)
	require.Len(t, s.Axes, 3)
	assert.Equal(t, Axis{Key: "dispatch_failure_policy", Values: []string{"compat", "reclaim"}, Line: 14}, s.Axes[0])
	assert.Equal(t, Axis{Key: "limits", Values: []string{"small", "large"}, Line: 15, Presets: [][]Setting{
		{{"max_pending_accepts", "2"}, {"queue_timeout", "500ms"}},
		{{"queue_timeout", "1m0s"}, {"max_pending_accepts", "50"}},
	}}, s.Axes[1])
	assert.Equal(t, Axis{Key: "workers.count", Values: []string{"1", "3"}, Line: 18}, s.Axes[2])

	require.Len(t, s.Workers, 3)
	w := s.Workers[0]
	assert.Equal(t, "orders", w.Name)
	assert.Equal(t, []string{"net.tcp://+:{port}/orders/"}, w.Routes)
	assert.Equal(t, "echo", w.Mode)
	assert.Equal(t, 2, w.Count)
	assert.Equal(t, 4, w.MaxInflight)
	assert.Equal(t, []string{"slow-accept:delay=300ms,dist=exp", "crash:after=100"}, specs(w.Faults))
	assert.Equal(t, faults.Worker, w.Faults[0].Kind)
	w = s.Workers[1]
	assert.Equal(t, WorkerGroup{Name: "web", Routes: []string{"http://+:{port}/web/", "http://+:{port}/api/"}, Mode: "http", Count: 1, MaxInflight: 1}, w)
	w = s.Workers[2]
	assert.Equal(t, WorkerGroup{Name: "w3", Routes: []string{"tls://secure.example:{port}"}, Mode: "https", Count: 1, MaxInflight: 1}, w)

	require.Len(t, s.Load, 3)
	l := s.Load[0]
	assert.Equal(t, "net.tcp://{host}:{port}/orders/", l.Target)
	assert.Equal(t, 20.5, l.Rate)
	assert.Zero(t, l.Concurrency)
	assert.Equal(t, "poisson", l.Arrival)
	assert.Equal(t, 3*time.Second, l.Duration)
	assert.Zero(t, l.Count)
	assert.Equal(t, 500*time.Millisecond, l.At)
	assert.Equal(t, 3, l.Messages)
	assert.Equal(t, 128, l.MessageSize)
	assert.Equal(t, 5*time.Second, l.Timeout)
	assert.Equal(t, time.Second, l.ConnectTimeout)
	require.Len(t, l.ClientFaults, 2)
	assert.Equal(t, "silent", l.ClientFaults[0].Spec.String())
	assert.Equal(t, faults.Client, l.ClientFaults[0].Spec.Kind)
	assert.Equal(t, 0.05, l.ClientFaults[0].Ratio)
	assert.Equal(t, "rst:when=preamble", l.ClientFaults[1].Spec.String())
	assert.InDelta(t, 0.1, l.ClientFaults[1].Ratio, 1e-12)
	l = s.Load[1]
	assert.Equal(t, "http://{host}:{port}/web/", l.Target)
	assert.Equal(t, 4, l.Concurrency)
	assert.Equal(t, int64(100), l.Count)
	assert.Equal(t, "POST", l.Method)
	assert.Equal(t, "constant", l.Arrival)
	l = s.Load[2]
	require.Len(t, l.ClientFaults, 1)
	assert.Equal(t, ClientFault{Spec: l.ClientFaults[0].Spec, Ratio: 1}, l.ClientFaults[0], "a bare spec takes every session")
	assert.Equal(t, "garbage", l.ClientFaults[0].Spec.String())

	assert.Equal(t, []string{"pause:at=1s,for=300ms", "netem:delay=5ms"}, specs(s.Faults))
	assert.Equal(t, faults.Daemon, s.Faults[0].Kind)
	assert.Equal(t, faults.Network, s.Faults[1].Kind)
	assert.True(t, s.Netns, "a network fault needs the namespaces, whatever netns says")
	assert.Equal(t, 3, s.Repetitions)
	assert.Equal(t, 90*time.Second, s.Drain)

	require.Len(t, s.Assert, 5)
	a := s.Assert[0]
	assert.Equal(t, 55, a.Line)
	assert.Equal(t, []Where{{"dispatch_failure_policy", []string{"reclaim"}}, {"limits", []string{"small", "large"}}}, a.Where)
	require.Len(t, a.Expect, 3)
	assert.Equal(t, Expectation{Text: "share(fault:ServerTooBusy) < 0.05", Metric: "share", Class: "fault:ServerTooBusy", Op: "<", Value: 0.05}, a.Expect[2])
	assert.Equal(t, "dispatch_failure_policy=reclaim limits=small|large", a.String())
	assert.Equal(t, []Where{{"dispatch_timeout", []string{"1s"}}}, s.Assert[1].Where, "where values are canonical")
	assert.Equal(t, []Expectation{{Text: "leaked_handles == 0", Metric: "leaked_handles", Op: "==", Value: 0}}, s.Assert[1].Expect)
	assert.Equal(t, []Where{{"queue_timeout", []string{"1m0s"}}, {"workers.count", []string{"3"}}}, s.Assert[2].Where)
	assert.Equal(t, []Where{{"grace_period", []string{"30s"}}}, s.Assert[3].Where)
	assert.Empty(t, s.Assert[4].Where)
	assert.Equal(t, "every cell", s.Assert[4].String())
}

func TestParseDefaults(t *testing.T) {
	s := parseFile(t, "minimal.yaml")
	assert.Equal(t, "minimal", s.Name)
	assert.Empty(t, s.Description)
	assert.Equal(t, 1, s.Repetitions)
	assert.Equal(t, 10*time.Second, s.Drain)
	assert.False(t, s.Netns)
	assert.Empty(t, s.Base)
	assert.Empty(t, s.Axes)
	assert.Empty(t, s.Faults)
	assert.Empty(t, s.Assert)
	// The mode follows the route's scheme; names are w1, w2, … in order.
	for i, mode := range []string{"echo", "http", "https"} {
		g := s.Workers[i]
		assert.Equal(t, fmt.Sprintf("w%d", i+1), g.Name)
		assert.Equal(t, mode, g.Mode, g.Routes[0])
		assert.Equal(t, 1, g.Count)
		assert.Equal(t, 1, g.MaxInflight)
		assert.Empty(t, g.Faults)
	}
	assert.Equal(t, []Load{{
		Target: "net.tcp://{host}:{port}/a/", Rate: 5, Count: 10,
		Messages: 1, Arrival: "constant", Timeout: 10 * time.Second, ConnectTimeout: 3 * time.Second,
	}}, s.Load)
	cells := s.Cells()
	require.Len(t, cells, 1)
	assert.Equal(t, "(no sweep)", cells[0].Label())
	assert.Empty(t, cells[0].Settings)
}

// head is a valid start of a scenario (lines 1 to 3) for the bad cases
// to add to: each case's text begins with a newline, so its first line is
// line 4.
const head = `name: x
workers: [{name: a, route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`

// manyValues is a flow list of n integers from 1.
func manyValues(n int) string {
	v := make([]string, n)
	for i := range v {
		v[i] = fmt.Sprint(i + 1)
	}
	return "[" + strings.Join(v, ", ") + "]"
}

// badScenarios are scenarios Parse refuses: the error names the file,
// the line (0: no line) and says what is wrong. FuzzParse seeds from them.
var badScenarios = []struct {
	name string
	text string
	line int
	want []string
}{
	{"empty", "", 0, []string{"empty scenario"}},
	{"comment-only", "# nothing yet\n", 0, []string{"empty scenario"}},
	{"not-a-mapping", "- name: x\n", 1, []string{"scenario: want a mapping"}},
	{"bad-yaml", head + "\ndaemon: {base: [}\n", 0, []string{"bad YAML: line", "did not find expected node content"}},
	{"two-documents", head + "\n---\nname: y\n", 4, []string{"more than one YAML document"}},
	{"unknown-top-level-key", head + `
repetition: 3`, 4, []string{`scenario: unknown key "repetition"`, "repetitions"}},
	{"top-level-key-twice", head + `
name: y`, 4, []string{`key "name" given twice (first on line 1)`}},
	{"missing-load", "name: x\nworkers: [{route: \"net.tcp://+:{port}/a/\"}]\n", 1, []string{`"load" is required`}},
	{"bad-name", "name: My Scenario\n" + head[len("name: x\n"):], 1, []string{`name "My Scenario": use lower-case letters`}},
	{"repetitions-zero", head + `
repetitions: 0`, 4, []string{"repetitions: want an integer from 1 to 100, got 0"}},
	{"drain-not-duration", head + `
drain: 10`, 4, []string{"drain: want a duration", `"10"`}},
	{"netns-not-bool", head + `
netns: yes please`, 4, []string{"netns: want true or false"}},
	{"target-other-host", `name: x
workers: [{name: a, route: "tls://a.example:{port}/"}]
load: [{target: "https://a.example:{port}/", rate: 10, duration: 2s}]`, 3, []string{"write the host as {host}", `connect: "{host}:{port}"`}},
	{"connect-elsewhere", `name: x
workers: [{name: a, route: "tls://a.example:{port}/"}]
load: [{target: "https://a.example:{port}/", connect: "a.example:{port}", rate: 10, duration: 2s}]`, 3, []string{`connect "a.example:{port}": want "{host}:{port}"`}},
	{"connect-closed-http", `name: x
workers: [{name: a, route: "http://a.example:{port}/"}]
load: [{target: "http://a.example:{port}/", connect: "{host}:{port}", concurrency: 2, duration: 2s}]`, 3, []string{"connect needs the open model"}},
	{"new-connections-on-net-tcp", `name: x
workers: [{name: a, route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s, new_connections: true}]`, 3, []string{"new_connections is for http and https targets"}},
	{"hold-on-net-tcp", `name: x
workers: [{name: a, route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s, hold: 1s}]`, 3, []string{"send, send_delay and hold are for tcp:// connection storms"}},
	{"send-bad-escape", `name: x
workers: [{name: a, route: "net.tcp://+:{port}/a/"}]
load: [{target: "tcp://{host}:{port}", rate: 10, duration: 2s, send: "\\q"}]`, 3, []string{"send:", "Go string escapes"}},

	// The daemon section.
	{"unknown-daemon-section", head + `
daemon:
  bse: {}`, 5, []string{`daemon: unknown key "bse"`, "base, sweep"}},
	{"unknown-base-key", head + `
daemon:
  base:
    receive_timeout: 1s
    max_pending_acepts: 3`, 7, []string{`daemon.base: unknown key "max_pending_acepts"`, "max_pending_accepts"}},
	{"unknown-sweep-key", head + `
daemon:
  sweep:
    dispatch_timout: [1s, 2s]`, 6, []string{`daemon.sweep: unknown key "dispatch_timout"`, "dispatch_timeout"}},
	{"runner-key-control-socket", head + `
daemon:
  base:
    control_socket: x.sock`, 6, []string{"daemon.base: control_socket is set by the runner"}},
	{"runner-key-metrics-addr", head + `
daemon:
  sweep:
    metrics_addr: ["127.0.0.1:9100", "127.0.0.1:9101"]`, 6, []string{"daemon.sweep: metrics_addr is set by the runner"}},
	{"runner-key-listen-addresses", head + `
daemon:
  base:
    listen_addresses: ["::1"]`, 6, []string{"listen_addresses is set by the runner"}},
	{"runner-key-in-preset", head + `
daemon:
  sweep:
    where:
      here: {listen_addresses: ["::1"]}`, 7, []string{"daemon.sweep.where.here: listen_addresses is set by the runner"}},
	{"key-in-base-and-sweep", head + `
daemon:
  base:
    dispatch_timeout: 1s
  sweep:
    dispatch_timeout: [1s, 2s]`, 8, []string{"dispatch_timeout is already set on line 6", "in base or in the sweep"}},
	{"key-in-base-and-preset", head + `
daemon:
  base:
    queue_timeout: 1s
  sweep:
    limits:
      small: {queue_timeout: 2s}`, 9, []string{"daemon.sweep.limits: queue_timeout is already set on line 6"}},
	{"key-in-two-preset-axes", head + `
daemon:
  sweep:
    limits:
      small: {queue_timeout: 2s}
    others:
      big: {queue_timeout: 3s}`, 9, []string{"queue_timeout is already set on line 6"}},
	{"key-in-base-twice", head + `
daemon:
  base:
    queue_timeout: 1s
    queue_timeout: 2s`, 7, []string{"queue_timeout is already set on line 6"}},
	{"string-for-int", head + `
daemon:
  base:
    max_pending_accepts: many`, 6, []string{"daemon.base: max_pending_accepts: want an integer", `"many"`}},
	{"int-out-of-range", head + `
daemon:
  sweep:
    max_http_head: [512, 100]`, 6, []string{"max_http_head: want an integer from 512"}},
	{"bad-duration", head + `
daemon:
  sweep:
    receive_timeout:
      - 1s
      - 5 seconds`, 8, []string{"daemon.sweep: receive_timeout: want a duration", `"5 seconds"`}},
	{"bad-policy", head + `
daemon:
  base: {dispatch_failure_policy: safe}`, 5, []string{"dispatch_failure_policy: want reclaim or compat", `"safe"`}},
	{"bad-policy-in-preset", head + `
daemon:
  sweep:
    mode:
      old: {dispatch_failure_policy: compat}
      new: {dispatch_failure_policy: nice}`, 8, []string{"daemon.sweep.mode.new: dispatch_failure_policy: want reclaim or compat"}},
	{"empty-sweep-list", head + `
daemon:
  sweep:
    max_pending_accepts: []`, 6, []string{"max_pending_accepts: give at least one value"}},
	{"empty-preset-axis", head + `
daemon:
  sweep:
    limits: {}`, 6, []string{"limits: give at least one value"}},
	{"sweep-not-a-list", head + `
daemon:
  sweep:
    dispatch_timeout: 1s`, 6, []string{"dispatch_timeout: want a list of values"}},
	{"duplicate-sweep-value", head + `
daemon:
  sweep:
    dispatch_timeout:
      - 1s
      - 1000ms`, 8, []string{"dispatch_timeout: 1s given twice"}},
	{"presets-set-different-keys", head + `
daemon:
  sweep:
    limits:
      small: {max_pending_accepts: 2, queue_timeout: 1s}
      large: {max_pending_accepts: 50}`, 8, []string{"every preset must set the same keys (max_pending_accepts, queue_timeout); large sets max_pending_accepts"}},
	{"preset-key-twice", head + `
daemon:
  sweep:
    limits:
      small:
        max_pending_accepts: 2
        max_pending_accepts: 3`, 9, []string{"daemon.sweep.limits.small: max_pending_accepts given twice"}},
	{"preset-given-twice", head + `
daemon:
  sweep:
    limits:
      small: {max_pending_accepts: 2}
      small: {max_pending_accepts: 3}`, 8, []string{`preset "small" given twice`}},
	{"preset-not-a-mapping", head + `
daemon:
  sweep:
    limits:
      small: 2`, 7, []string{"daemon.sweep.limits.small: want a mapping"}},
	{"preset-axis-named-as-key", head + `
daemon:
  sweep:
    queue_timeout:
      small: {max_pending_accepts: 2}`, 6, []string{"queue_timeout is a setting; a preset axis needs a name of its own"}},
	{"too-many-cells", head + `
daemon:
  sweep:
    listen_backlog: ` + manyValues(64) + `
    max_pending_connections: ` + manyValues(65), 7, []string{"daemon.sweep: 4160 cells or more, at most 4096"}},
	{"invalid-cell", head + `
daemon:
  base:
    max_pending_connections: 10
  sweep:
    dispatch_failure_policy: [compat, reclaim]
    max_pending_accepts: [5, 20]`, 8, []string{"cell 1 (dispatch_failure_policy=compat max_pending_accepts=20)", "max_pending_accepts (20) must not exceed max_pending_connections (10)"}},
	{"load-rate-with-concurrency", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", concurrency: 2, duration: 2s}]
daemon:
  sweep:
    load.rate: [1, 2]`, 6, []string{"cell 0 (load.rate=1)", "a load uses concurrency"}},
	{"load-duration-past-an-hour", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 1, duration: 2s, at: 58m}]
daemon:
  sweep:
    load.duration: [1m, 3m]`, 6, []string{"cell 1 (load.duration=3m0s)", "would run past 1h0m0s"}},
	{"too-many-workers", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}, {route: "net.tcp://+:{port}/b/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 1, duration: 2s}]
daemon:
  sweep:
    workers.count: [1, 200]`, 6, []string{"cell 1 (workers.count=200)", "400 worker processes in all, at most 256"}},

	// Workers.
	{"workers-not-a-list", `name: x
workers: {route: "net.tcp://+:{port}/a/"}
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 2, []string{"workers: want a list of worker groups"}},
	{"unknown-worker-key", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    replicas: 2
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 4, []string{`worker group: unknown key "replicas"`, "count"}},
	{"worker-without-route", `name: x
workers:
  - count: 2
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 3, []string{"worker group w1: give route"}},
	{"route-without-port", `name: x
workers:
  - name: orders
    route: "net.tcp://+:808/a/"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 3, []string{"worker group orders", "write the port as {port}"}},
	{"port-not-the-route-port", `name: x
workers:
  - route: "net.tcp://+:1{port}/a/"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 3, []string{`route "net.tcp://+:1{port}/a/": write the port as {port}`}},
	{"port-in-route-path", `name: x
workers:
  - route: "http://+:8080/{port}/"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 3, []string{"write the port as {port}"}},
	{"route-bad-scheme", `name: x
workers:
  - route: "udp://+:{port}/a/"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 3, []string{"worker group w1", `scheme "udp"`}},
	{"worker-bad-mode", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    mode: ftp
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 4, []string{"mode: want echo, http or https"}},
	{"worker-name-twice", `name: x
workers:
  - {name: a, route: "net.tcp://+:{port}/a/"}
  - {name: a, route: "net.tcp://+:{port}/b/"}
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 4, []string{`worker group name "a" used twice (first on line 3)`}},
	{"worker-count-string", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    count: "2"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 4, []string{"count: want an integer"}},
	{"bad-worker-fault", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    faults:
      - "stall:at=1s,for=2s"
      - "slow-accept:delay=fast"
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 6, []string{"slow-accept:delay=fast", "bad delay"}},
	{"unknown-worker-fault", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    faults: [explode]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 4, []string{`fault "explode": unknown name; worker faults are`, "slow-accept"}},
	{"client-fault-as-worker-fault", `name: x
workers:
  - route: "net.tcp://+:{port}/a/"
    faults:
      - silent
load: [{target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}]`, 5, []string{"silent is a client fault: give it in a load's client_faults"}},
	{"worker-fault-as-daemon-fault", head + `
faults: ["crash:at=1s"]`, 4, []string{"crash is a worker fault: give it in a worker group's faults"}},
	{"bad-daemon-fault", head + `
faults:
  - "pause:at=soon"`, 5, []string{"pause:at=soon", "bad at"}},
	{"unknown-daemon-fault", head + `
faults: ["pase:at=1s"]`, 4, []string{`fault "pase:at=1s": unknown name; daemon faults are`, "network faults are netem"}},

	// Loads.
	{"load-not-a-list", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load: {target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s}`, 3, []string{"load: want a list of 1 to 16 load generators"}},
	{"target-without-port", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:808/a/"
    rate: 10
    duration: 2s`, 4, []string{`target "net.tcp://{host}:808/a/": write the port as {port}`}},
	{"target-port-without-colon", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}{port}/a/", rate: 10, duration: 2s}`, 4, []string{`target "net.tcp://{host}{port}/a/": write the port as {port}`}},
	{"target-port-in-path", `name: x
workers: [{route: "http://+:{port}/a/"}]
load:
  - {target: "http://{host}/{port}/", rate: 10, duration: 2s}`, 4, []string{"write the port as {port}"}},
	{"target-bad-scheme", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "ftp://{host}:{port}/a/", rate: 10, duration: 2s}`, 4, []string{"the scheme must be net.tcp://"}},
	{"rate-and-concurrency", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    rate: 10
    concurrency: 2
    duration: 2s`, 4, []string{"give one of rate (open model, sessions/s) and concurrency"}},
	{"neither-rate-nor-concurrency", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", duration: 2s}`, 4, []string{"give one of rate"}},
	{"neither-duration-nor-count", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", rate: 10}
  `, 4, []string{"give one of duration and count: a run must stop by itself"}},
	{"duration-and-count", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", rate: 10, duration: 2s, count: 5}`, 4, []string{"give one of duration and count"}},
	{"arrival-with-concurrency", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", concurrency: 2, count: 5, arrival: poisson}`, 4, []string{"arrival shapes the open model"}},
	{"bad-arrival", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", rate: 2, count: 5, arrival: bursty}`, 4, []string{"arrival: want constant or poisson"}},
	{"rate-not-a-number", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    count: 5
    rate: fast`, 6, []string{"rate: want a number"}},
	{"at-plus-duration-over-an-hour", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - {target: "net.tcp://{host}:{port}/a/", rate: 2, duration: 40m, at: 30m}`, 4, []string{"at + duration is over 1h0m0s"}},
	{"ratios-over-1", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    rate: 10
    duration: 2s
    client_faults:
      - {spec: silent, ratio: 0.6}
      - {spec: garbage, ratio: 60%}`, 8, []string{"client_faults: the ratios add up to 1.2, above 1"}},
	{"bare-and-ratio-over-1", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    rate: 10
    duration: 2s
    client_faults: [silent, {spec: garbage, ratio: 0.1}]`, 7, []string{"the ratios add up to 1.1"}},
	{"ratio-zero", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    rate: 10
    duration: 2s
    client_faults:
      - spec: silent
        ratio: 0`, 9, []string{"ratio: want a share above 0"}},
	{"worker-fault-as-client-fault", `name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load:
  - target: "net.tcp://{host}:{port}/a/"
    rate: 10
    duration: 2s
    client_faults: ["hang:at=1s"]`, 7, []string{"hang is a worker fault: give it in a worker group's faults"}},
	{"client-faults-http-concurrency", `name: x
workers: [{route: "http://+:{port}/a/"}]
load:
  - target: "http://{host}:{port}/a/"
    concurrency: 10
    duration: 2s
    client_faults: [silent]`, 4, []string{"client faults need the open model (rate) for http targets"}},

	// Assertions.
	{"assert-not-a-list", head + `
assert: {expect: ["ok > 0"]}`, 4, []string{"assert: want a list of {where, expect}"}},
	{"assert-without-expect", head + `
assert:
  - where: {dispatch_timeout: 1s}`, 5, []string{`assert: "expect" is required`}},
	{"unknown-metric", head + `
assert:
  - expect:
      - "ok > 0"
      - "p98_ms < 5"`, 7, []string{`unknown metric "p98_ms"`, "p99_ms", "count(CLASS)"}},
	{"malformed-expect", head + `
assert:
  - expect: ["p99_ms is small"]`, 5, []string{`"p99_ms is small": want METRIC OP NUMBER`}},
	{"expect-not-a-number", head + `
assert:
  - expect: "p99_ms < soon"`, 5, []string{`"soon" is not a number`}},
	{"count-without-class", head + `
assert:
  - expect: ["count < 3"]`, 5, []string{"count takes an outcome class"}},
	{"class-on-plain-metric", head + `
assert:
  - expect: ["p99_ms(x) < 3"]`, 5, []string{"only count(CLASS) and share(CLASS) take an argument"}},
	{"where-unknown-key", head + `
assert:
  - where: {dispatch_timout: 1s}
    expect: ["ok > 0"]`, 5, []string{`where: unknown key "dispatch_timout"`}},
	{"where-runner-key", head + `
assert:
  - where: {metrics_addr: "127.0.0.1:1"}
    expect: ["ok > 0"]`, 5, []string{`where: unknown key "metrics_addr"`}},
	{"where-bad-value", head + `
assert:
  - where:
      max_pending_accepts: [1, lots]
    expect: ["ok > 0"]`, 6, []string{"where: max_pending_accepts: want an integer", `"lots"`}},
	{"where-unknown-preset", head + `
daemon:
  sweep:
    limits:
      small: {max_pending_accepts: 2}
      large: {max_pending_accepts: 50}
assert:
  - where: {limits: huge}
    expect: ["ok > 0"]`, 10, []string{"where: limits: want one of the presets small, large", `"huge"`}},
	{"where-unknown-worker-group", head + `
assert:
  - where: {workers.b.count: 1}
    expect: ["ok > 0"]`, 5, []string{`where: unknown key "workers.b.count"`}},
}

func TestParseBad(t *testing.T) {
	for _, tc := range badScenarios {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.name + ".yaml"
			s, err := Parse(file, []byte(tc.text))
			require.Error(t, err)
			assert.Nil(t, s)
			var e *Error
			require.True(t, errors.As(err, &e), "%T", err)
			assert.Equal(t, file, e.File)
			assert.Equal(t, tc.line, e.Line, "%v", err)
			prefix := fmt.Sprintf("%s:%d: ", file, tc.line)
			if tc.line == 0 {
				prefix = file + ": "
			}
			assert.True(t, strings.HasPrefix(err.Error(), prefix), "want prefix %q: %v", prefix, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// TestParseCanonical: values compare as text, so each is written one way
// whatever the file says.
func TestParseCanonical(t *testing.T) {
	s, err := Parse("c.yaml", []byte(head+`
daemon:
  base:
    grace_period: 0
    reregister_backoff: 1500ms
    max_http_head: +4096
    allow_accounts: []
  sweep:
    load.rate: [5, 2.50, 1e3]
    load.duration: [90s, 2m]
`))
	require.NoError(t, err)
	assert.Equal(t, []Setting{
		{"grace_period", "0s"},
		{"reregister_backoff", "1.5s"},
		{"max_http_head", "4096"},
		{"allow_accounts", "[]"},
	}, s.Base)
	assert.Equal(t, []string{"5", "2.5", "1000"}, s.Axes[0].Values)
	assert.Equal(t, []string{"1m30s", "2m0s"}, s.Axes[1].Values)
}

func TestExpand(t *testing.T) {
	assert.Equal(t, "net.tcp://10.0.0.1:8808/a/", Expand("net.tcp://{host}:{port}/a/", "10.0.0.1", 8808))
	assert.Equal(t, "http://+:80/{x}/", Expand("http://+:{port}/{x}/", "h", 80))
}

func TestErrorWithoutLine(t *testing.T) {
	assert.Equal(t, "a.yaml: oops", (&Error{File: "a.yaml", Msg: "oops"}).Error())
	assert.Equal(t, "a.yaml:3: oops", (&Error{File: "a.yaml", Line: 3, Msg: "oops"}).Error())
}

func TestLibrary(t *testing.T) {
	names := Names()
	require.NotEmpty(t, names)
	assert.IsNonDecreasing(t, names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			assert.False(t, strings.HasSuffix(name, ".yaml"), "a name, not a file")
			s, err := Open(name)
			require.NoError(t, err)
			assert.Equal(t, "scenarios/"+name+".yaml", s.File)
			require.NotEmpty(t, s.Cells())
			for _, c := range s.Cells() {
				_, err := s.Plan(c)
				require.NoError(t, err, "cell %d", c.Index)
			}
			// The package directory holds the files: by path, the same.
			byPath, err := Open(name + ".yaml")
			require.NoError(t, err)
			assert.Equal(t, name+".yaml", byPath.File)
			assert.Equal(t, s.Text, byPath.Text)
			assert.Equal(t, s.Cells(), byPath.Cells())
		})
	}
}

func TestOpen(t *testing.T) {
	s, err := Open(filepath.Join("testdata", "minimal.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "minimal", s.Name)

	_, err = Open("no-such-scenario")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no scenario file "no-such-scenario" and no built-in scenario of that name`)
	for _, name := range Names() {
		assert.Contains(t, err.Error(), name)
	}

	// A path that is not there is a missing file, not a name.
	_, err = Open(filepath.Join("testdata", "nope.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope.yaml")
	assert.ErrorIs(t, err, os.ErrNotExist)

	// A bad file is its parse error.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(head+"\nrepetition: 3\n"), 0o600))
	_, err = Open(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad+":4: ")
}

// Two groups cannot register one route: the daemon would refuse the
// second with ConflictingRegistration at run time.
func TestTwoGroupsOnOneRouteRefused(t *testing.T) {
	_, err := Parse("two.yaml", []byte(`name: two
workers:
  - {name: a, route: "net.tcp://+:{port}/orders/"}
  - {name: b, route: "net.tcp://+:{port}/Orders/"}
load:
  - {target: "net.tcp://{host}:{port}/orders/", rate: 1, duration: 1s}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "two.yaml:4: worker group b: route")
	assert.Contains(t, err.Error(), "registered by group a too")
}

// A tcp:// load is a connection storm with its own knobs.
func TestParseStorm(t *testing.T) {
	s, err := Parse("storm.yaml", []byte(`name: storm
workers: [{name: a, route: "net.tcp://+:{port}/a/"}]
load: [{target: "tcp://{host}:{port}", rate: 100, duration: 2s, send: "\\x00\\x01", send_delay: 50ms, hold: 1s}]
`))
	require.NoError(t, err)
	l := s.Load[0]
	assert.Equal(t, `\x00\x01`, l.Send)
	assert.Equal(t, 50*time.Millisecond, l.SendDelay)
	assert.Equal(t, time.Second, l.Hold)
}

// A target may name a host of its own (for its SNI, Via or Host header)
// when connect says where the daemon is.
func TestParseConnect(t *testing.T) {
	s, err := Parse("sni.yaml", []byte(`name: sni
workers: [{name: a, route: "tls://a.example:{port}/"}]
load: [{target: "https://a.example:{port}/", connect: "{host}:{port}", rate: 10, duration: 2s}]
`))
	require.NoError(t, err)
	assert.Equal(t, "{host}:{port}", s.Load[0].Connect)
	assert.False(t, s.Load[0].NewConnections)
	assert.Equal(t, "https", s.Workers[0].Mode)
}

// What the reference worker or the load would refuse at run time is
// refused when the file is read, with its line.
func TestParseRefusesWhatRunsWouldRefuse(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`name: x
workers: [{name: a, route: "net.tcp://+:{port}/a/", mode: https}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 1, duration: 1s}]`, `x.yaml:2: worker group a: mode https cannot serve route "net.tcp://+:{port}/a/": the reference worker serves it with mode echo`},
		{`name: x
workers: [{name: a, route: "http://+:{port}/a/"}]
load: [{target: "http://{host}:{port}/a/", method: "G T", rate: 1, duration: 1s}]`, `x.yaml:3: method: "G T" is not an HTTP method`},
		{`name: x
workers: [{name: a, route: "http://+:{port}/a/"}]
load: [{target: "http://{host}:{port}/a/", rate: 1, duration: 1s}]
assert: [{where: {dispatch_failure_policy: compat}, expect: ["ok > 0"]}]`, `x.yaml:4: assert: where dispatch_failure_policy=compat matches no cell of the sweep`},
	} {
		_, err := Parse("x.yaml", []byte(tc.text))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// A path names a file; only a bare name falls back to the library.
func TestOpenPathIsNotABuiltIn(t *testing.T) {
	_, err := Open("no-such-dir/" + Default + ".yaml")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no such file")
	s, err := Open(Default + ".yaml")
	require.NoError(t, err)
	assert.Equal(t, Default, s.Name)
}

// The example in README.md is a scenario that parses.
func TestReadmeExampleParses(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	require.True(t, ok, "README.md has a yaml example")
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	s, err := Parse("README.md example", []byte(example))
	require.NoError(t, err)
	assert.Equal(t, "slow-workers", s.Name)
	assert.Len(t, s.Cells(), 8)
}

// The compare section gives `portshare compare` a tolerance per metric;
// the values are read as written, whatever YAML type they have.
func TestParseCompare(t *testing.T) {
	s, err := Parse("c.yaml", []byte(head+`
compare:
  p99_ms: x3+50
  error_rate: +0.1
  throughput: off
  max_pending: exact
  listen_drops: +5
  sessions: off
`))
	require.NoError(t, err)
	assert.Equal(t, map[string]Tolerance{
		"p99_ms":       {Text: "x3+50", Ratio: 3, Abs: 50},
		"error_rate":   {Text: "+0.1", Ratio: 1, Abs: 0.1},
		"throughput":   {Text: "off", Off: true, Ratio: 1},
		"max_pending":  {Text: "exact", Exact: true, Ratio: 1},
		"listen_drops": {Text: "+5", Ratio: 1, Abs: 5},
		"sessions":     {Text: "off", Off: true, Ratio: 1},
	}, s.Compare)

	s, err = Parse("c.yaml", []byte(head))
	require.NoError(t, err)
	assert.Nil(t, s.Compare, "no section, no tolerances: the defaults apply")

	for _, tc := range []struct {
		name, text string
		line       int
		want       []string
	}{
		{"unknown-metric", "compare:\n  p99: x2\n", 5, []string{`compare: unknown metric "p99"`, "p99_ms"}},
		{"bad-tolerance", "compare:\n  p99_ms: 2x\n", 5, []string{`p99_ms: tolerance "2x"`, ToleranceForms}},
		{"no-sign", "compare:\n  error_rate: 0.05\n", 5, []string{"write an absolute slack with its sign, +0.05"}},
		{"ratio-below-one", "compare:\n  p99_ms: x0.5\n", 5, []string{"a ratio below 1"}},
		{"negative-slack", "compare:\n  p99_ms: x2+-3\n", 5, []string{`tolerance "x2+-3"`}},
		{"sessions-gated", "compare:\n  sessions: x2\n", 5, []string{"sessions: never gated"}},
		{"empty", "compare:\n  p99_ms:\n", 5, []string{"p99_ms: want a tolerance"}},
		{"list", "compare:\n  p99_ms: [x2]\n", 5, []string{"p99_ms: want a tolerance"}},
		{"not-a-mapping", "compare: [p99_ms]\n", 4, []string{"compare: want a mapping of metric to tolerance"}},
		{"twice", "compare:\n  p99_ms: x2\n  p99_ms: x3\n", 6, []string{`metric "p99_ms" given twice (first on line 5)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(head+"\n"+tc.text))
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("c.yaml:%d: ", tc.line)), "%v", err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestParseTolerance(t *testing.T) {
	for text, want := range map[string]Tolerance{
		"exact":    {Text: "exact", Exact: true, Ratio: 1},
		" off ":    {Text: "off", Off: true, Ratio: 1},
		"+0.05":    {Text: "+0.05", Ratio: 1, Abs: 0.05},
		"+0":       {Text: "+0", Ratio: 1},
		"x2":       {Text: "x2", Ratio: 2},
		"x1":       {Text: "x1", Ratio: 1},
		"x1.5":     {Text: "x1.5", Ratio: 1.5},
		"x2+20":    {Text: "x2+20", Ratio: 2, Abs: 20},
		"x1e1+1e2": {Text: "x1e1+1e2", Ratio: 10, Abs: 100},
	} {
		got, err := ParseTolerance(text)
		require.NoError(t, err, text)
		assert.Equal(t, want, got, text)
	}
	for _, text := range []string{"", "x", "+", "2", "-1", "+-1", "++1", "x0.9", "x-2", "x2+", "x2-3", "xinf", "+NaN", "x0x10", "1.5x", "exact+1", "X2", "+1_000", "x2+20+1"} {
		_, err := ParseTolerance(text)
		require.Error(t, err, "%q", text)
		assert.Contains(t, err.Error(), ToleranceForms, "%q", text)
	}
	_, err := ParseMetricTolerance("p99", "x2")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown metric "p99"`)
	assert.True(t, LowerIsWorse("throughput") && LowerIsWorse("ok") && LowerIsWorse("dispatched"))
	assert.False(t, LowerIsWorse("p99_ms") || LowerIsWorse("leaked_handles"))
	d := DefaultTolerances()
	assert.Len(t, d, 10)
	assert.Equal(t, Tolerance{Text: "x2+20", Ratio: 2, Abs: 20}, d["p99_ms"])
	x, err := ParseTolerance(ExactOverNonZero.Text)
	require.NoError(t, err)
	assert.Equal(t, ExactOverNonZero, x, "ExactOverNonZero is the form its text says")
}
