package scenarios

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/config"
)

// labels are the cells' labels, in order.
func labels(cells []Cell) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c.Label()
	}
	return out
}

func TestCells(t *testing.T) {
	s := parseFile(t, "full.yaml")
	cells := s.Cells()
	// The first axis varies slowest, the last fastest.
	assert.Equal(t, []string{
		"dispatch_failure_policy=compat limits=small workers.count=1",
		"dispatch_failure_policy=compat limits=small workers.count=3",
		"dispatch_failure_policy=compat limits=large workers.count=1",
		"dispatch_failure_policy=compat limits=large workers.count=3",
		"dispatch_failure_policy=reclaim limits=small workers.count=1",
		"dispatch_failure_policy=reclaim limits=small workers.count=3",
		"dispatch_failure_policy=reclaim limits=large workers.count=1",
		"dispatch_failure_policy=reclaim limits=large workers.count=3",
	}, labels(cells))
	for i, c := range cells {
		assert.Equal(t, i, c.Index)
	}
	// Settings: the base, then each axis's value or its preset's keys.
	assert.Equal(t, Cell{
		Index:  5,
		Values: []Setting{{"dispatch_failure_policy", "reclaim"}, {"limits", "small"}, {"workers.count", "3"}},
		Settings: []Setting{
			{"dispatch_timeout", "1s"}, {"receive_timeout", "2s"}, {"max_pending_connections", "200"},
			{"allow_accounts", `["root"]`}, {"workers.web.max_inflight", "8"},
			{"dispatch_failure_policy", "reclaim"},
			{"max_pending_accepts", "2"}, {"queue_timeout", "500ms"},
			{"workers.count", "3"},
		},
	}, cells[5])
	assert.Equal(t, []Setting{{"queue_timeout", "1m0s"}, {"max_pending_accepts", "50"}}, cells[2].Settings[6:8])

	// Cells do not share the base's backing array.
	cells[0].Settings[0].Value = "changed"
	assert.Equal(t, "1s", s.Cells()[0].Settings[0].Value)
}

func TestCellValue(t *testing.T) {
	s := parseFile(t, "full.yaml")
	c := s.Cells()[6] // reclaim, large, workers.count=1
	for key, want := range map[string]string{
		"dispatch_failure_policy":  "reclaim", // swept
		"limits":                   "large",   // a preset axis: its preset's name
		"max_pending_accepts":      "50",      // from the preset
		"dispatch_timeout":         "1s",      // base
		"grace_period":             "30s",     // the daemon's default
		"max_http_head":            "8192",
		"workers.count":            "1",
		"workers.web.max_inflight": "8", // base
		"workers.orders.count":     "1", // workers.count applies to every group
		"workers.max_inflight":     "",  // the groups differ
		"load.rate":                "",  // the loads differ
		"workers.w3.max_inflight":  "1", // the group's default
		"load.duration":            "",
	} {
		v, ok := c.Value(s, key)
		assert.True(t, ok, key)
		assert.Equal(t, want, v, key)
	}
	_, ok := c.Value(s, "no_such_key")
	assert.False(t, ok)
	_, ok = c.Value(s, "control_socket")
	assert.False(t, ok, "the runner's keys are not the scenario's")

	p := parseFile(t, "plan.yaml")
	c = p.Cells()[0]
	for key, want := range map[string]string{
		"load.duration":              "2s", // every load's own
		"load.rate":                  "10",
		"workers.count":              "2",
		"workers.admin.max_inflight": "3",
		"workers.api.max_inflight":   "1",
		"grace_period":               "0s",
	} {
		v, ok := c.Value(p, key)
		assert.True(t, ok, key)
		assert.Equal(t, want, v, key)
	}
}

func TestPlan(t *testing.T) {
	s := parseFile(t, "plan.yaml")
	cells := s.Cells()
	assert.Equal(t, []string{
		"load.rate=10 workers.api.max_inflight=1",
		"load.rate=10 workers.api.max_inflight=8",
		"load.rate=50.5 workers.api.max_inflight=1",
		"load.rate=50.5 workers.api.max_inflight=8",
	}, labels(cells))
	pl, err := s.Plan(cells[3])
	require.NoError(t, err)
	assert.Equal(t, cells[3], pl.Cell)
	assert.Equal(t, []Setting{{"grace_period", "0s"}}, pl.Config, "only the daemon's keys")
	require.Len(t, pl.Workers, 2)
	assert.Equal(t, "api", pl.Workers[0].Name)
	assert.Equal(t, 2, pl.Workers[0].Count, "workers.count")
	assert.Equal(t, 8, pl.Workers[0].MaxInflight, "workers.api.max_inflight")
	assert.Equal(t, 2, pl.Workers[1].Count)
	assert.Equal(t, 3, pl.Workers[1].MaxInflight, "another group keeps its own")
	require.Len(t, pl.Load, 2)
	for _, l := range pl.Load {
		assert.Equal(t, 50.5, l.Rate, "load.rate")
		assert.Equal(t, 2*time.Second, l.Duration)
	}
	// The plan is a copy: the scenario is as written.
	assert.Equal(t, 1, s.Workers[0].Count)
	assert.Equal(t, 1, s.Workers[0].MaxInflight)
	assert.Equal(t, 1.0, s.Load[0].Rate)

	pl, err = s.Plan(cells[0])
	require.NoError(t, err)
	assert.Equal(t, 1, pl.Workers[0].MaxInflight)
	assert.Equal(t, 10.0, pl.Load[1].Rate)
}

func TestPlanLoadDuration(t *testing.T) {
	s, err := Parse("d.yaml", []byte(head+`
daemon:
  sweep:
    load.duration: [1s, 1m]
`))
	require.NoError(t, err)
	pl, err := s.Plan(s.Cells()[1])
	require.NoError(t, err)
	assert.Equal(t, time.Minute, pl.Load[0].Duration)

	// A load that stops after a count has no duration to set.
	s, err = Parse("d.yaml", []byte(`name: x
workers: [{route: "net.tcp://+:{port}/a/"}]
load: [{target: "net.tcp://{host}:{port}/a/", rate: 1, count: 5}]
`))
	require.NoError(t, err)
	err = s.Set("load.duration=5s")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "a load stops after a count")
}

func TestConfigYAML(t *testing.T) {
	s := parseFile(t, "full.yaml")
	for _, c := range s.Cells() {
		pl, err := s.Plan(c)
		require.NoError(t, err)
		text := pl.ConfigYAML("/run/test/ps.sock", []string{"127.0.0.1", "::1"})
		assert.True(t, strings.HasPrefix(string(text), fmt.Sprintf("# written by portshare tune for cell %d\n", c.Index)))
		cfg, err := config.Parse("cell.yaml", text)
		require.NoError(t, err, "%s", text)
		assert.Equal(t, "/run/test/ps.sock", cfg.ControlSocket)
		assert.Equal(t, []string{"127.0.0.1", "::1"}, cfg.ListenAddresses)
		assert.Empty(t, cfg.MetricsAddr)
		assert.Equal(t, time.Second, cfg.DispatchTimeout)
		assert.Equal(t, 2*time.Second, cfg.ReceiveTimeout)
		assert.Equal(t, 200, cfg.MaxPendingConnections)
		assert.Equal(t, []string{"root"}, cfg.AllowAccounts)
		policy, _ := c.Value(s, "dispatch_failure_policy")
		assert.Equal(t, config.Policy(policy), cfg.DispatchFailurePolicy)
		limits, _ := c.Value(s, "limits")
		switch limits {
		case "small":
			assert.Equal(t, 2, cfg.MaxPendingAccepts)
			assert.Equal(t, 500*time.Millisecond, cfg.QueueTimeout)
		case "large":
			assert.Equal(t, 50, cfg.MaxPendingAccepts)
			assert.Equal(t, time.Minute, cfg.QueueTimeout)
		default:
			t.Fatalf("limits %q", limits)
		}
		assert.NotContains(t, string(text), "workers.", "not a daemon key")
	}

	// Every kind of value: an empty list, a zero duration, an integer.
	s, err := Parse("c.yaml", []byte(head+`
daemon:
  base: {allow_accounts: [], grace_period: 0, listen_backlog: 7, log_level: warn}
`))
	require.NoError(t, err)
	pl, err := s.Plan(s.Cells()[0])
	require.NoError(t, err)
	cfg, err := config.Parse("cell.yaml", pl.ConfigYAML("s.sock", []string{"0.0.0.0"}))
	require.NoError(t, err)
	assert.Empty(t, cfg.AllowAccounts)
	assert.Zero(t, cfg.GracePeriod)
	assert.Equal(t, 7, cfg.ListenBacklog)
	assert.Equal(t, "warn", cfg.LogLevel)
}

func TestSetFixesASweptKey(t *testing.T) {
	s := parseFile(t, "full.yaml")
	require.NoError(t, s.Set("dispatch_failure_policy=reclaim"))
	cells := s.Cells()
	require.Len(t, cells, 4)
	assert.Equal(t, "limits=small workers.count=1", cells[0].Label())
	assert.Equal(t, Setting{"dispatch_failure_policy", "reclaim"}, s.Base[len(s.Base)-1])
	for _, c := range cells {
		v, _ := c.Value(s, "dispatch_failure_policy")
		assert.Equal(t, "reclaim", v)
	}
}

func TestSetSweepsABaseKey(t *testing.T) {
	s := parseFile(t, "full.yaml")
	require.NoError(t, s.Set("dispatch_timeout=500ms, 2000ms ,3s"))
	assert.NotContains(t, s.Base, Setting{"dispatch_timeout", "1s"})
	ax := s.Axes[len(s.Axes)-1]
	assert.Equal(t, "dispatch_timeout", ax.Key)
	assert.Equal(t, []string{"500ms", "2s", "3s"}, ax.Values, "canonical")
	cells := s.Cells()
	require.Len(t, cells, 24)
	assert.Equal(t, "dispatch_failure_policy=compat limits=small workers.count=1 dispatch_timeout=2s", cells[1].Label())

	// A swept key swept afresh: the file's values go.
	require.NoError(t, s.Set("workers.count=2,4"))
	assert.Equal(t, []string{"2", "4"}, s.Axes[len(s.Axes)-1].Values)
	assert.Len(t, s.Cells(), 24)

	// A key the file leaves alone.
	require.NoError(t, s.Set("workers.orders.max_inflight=16"))
	pl, err := s.Plan(s.Cells()[0])
	require.NoError(t, err)
	assert.Equal(t, 16, pl.Workers[0].MaxInflight)
}

func TestSetNarrowsAPresetAxis(t *testing.T) {
	s := parseFile(t, "full.yaml")
	require.NoError(t, s.Set("limits=large"))
	assert.Len(t, s.Cells(), 4)
	assert.Equal(t, []string{"large"}, s.Axes[1].Values)
	assert.Equal(t, [][]Setting{{{"queue_timeout", "1m0s"}, {"max_pending_accepts", "50"}}}, s.Axes[1].Presets)
	v, _ := s.Cells()[0].Value(s, "max_pending_accepts")
	assert.Equal(t, "50", v)

	s = parseFile(t, "full.yaml")
	require.NoError(t, s.Set("limits=large,small"))
	assert.Equal(t, []string{"large", "small"}, s.Axes[1].Values, "in the order given")
	assert.Len(t, s.Cells(), 8)
}

func TestSetRefuses(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"dispatch_timeout", "want KEY=VALUE or KEY=V1,V2"},
		{"=1s", "want KEY=VALUE"},
		{"dispatch_timeout=", "want KEY=VALUE"},
		{"dispatch_timout=1s", `unknown key "dispatch_timout" (known keys: `},
		{"workers.nobody.count=2", `unknown key "workers.nobody.count"`},
		{"control_socket=x.sock", "control_socket: set by the runner"},
		{"metrics_addr=127.0.0.1:1", "metrics_addr: set by the runner"},
		{"listen_addresses=[\"::1\"]", "listen_addresses: set by the runner"},
		{"queue_timeout=1s", "the preset axis limits sets it; choose presets with --set limits=NAME"},
		{"max_pending_accepts=3", "the preset axis limits sets it"},
		{"limits=huge", `no preset "huge" (presets: small, large)`},
		{"limits=small,small", "preset small given twice"},
		{"max_pending_connections=lots", "--set max_pending_connections: want an integer"},
		{"receive_timeout=5 seconds", "--set receive_timeout: want a duration"},
		{"dispatch_failure_policy=safe", "want reclaim or compat"},
		{"dispatch_timeout=1s,1000ms", "--set dispatch_timeout: 1s given twice"},
		{"dispatch_timeout=1s,", `bad value ""`},
		{"dispatch_timeout=[1s", "bad value"},
		{"workers.count=0", "want an integer from 1 to 256"},
		{"load.rate=5", "a load uses concurrency"},
		{"max_pending_connections=10", "cell 2 (dispatch_failure_policy=compat limits=large workers.count=1)"},
		{"workers.count=100", "at most 256"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			s := parseFile(t, "full.yaml")
			err := s.Set(tc.arg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "--set"), "%v", err)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestSetTooManyCells(t *testing.T) {
	s := parseFile(t, "minimal.yaml")
	require.NoError(t, s.Set("listen_backlog="+strings.Trim(manyValues(64), "[]")))
	ms := strings.ReplaceAll(strings.Trim(manyValues(65), "[]"), ",", "ms,") + "ms"
	err := s.Set("receive_timeout=" + ms)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--set: 4160 cells, at most 4096")
}

// A bracketed --set value is one list, not a sweep of its parts.
func TestSetListValue(t *testing.T) {
	s, err := Parse("l.yaml", []byte(head))
	require.NoError(t, err)
	require.NoError(t, s.Set("allow_accounts=[root,uid:0]"))
	assert.Empty(t, s.Axes)
	assert.Equal(t, []Setting{{"allow_accounts", `["root","uid:0"]`}}, s.Base)
}
