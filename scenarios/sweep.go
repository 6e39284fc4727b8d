package scenarios

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portshare/portshare/sharer/config"
)

// A Cell is one combination of the swept values.
type Cell struct {
	Index int
	// Values holds one setting per axis, in axis order (a preset axis
	// gives the preset's name).
	Values []Setting
	// Settings is everything the cell sets: the base, the swept values,
	// and the keys of its presets, in that order.
	Settings []Setting
}

// Label is the cell's swept values as text: "dispatch_failure_policy=compat max_pending_accepts=2".
func (c Cell) Label() string {
	if len(c.Values) == 0 {
		return "(no sweep)"
	}
	parts := make([]string, len(c.Values))
	for i, v := range c.Values {
		parts[i] = v.Key + "=" + v.Value
	}
	return strings.Join(parts, " ")
}

// Value is the cell's value of key: swept, preset, from the base, or else
// the daemon's or the scenario's default; ok is false for an unknown key.
func (c Cell) Value(s *Scenario, key string) (string, bool) {
	for _, v := range c.Values {
		if v.Key == key {
			return v.Value, true
		}
	}
	if !isDaemonKey(key) && slices.Contains(s.settableKeys(), key) {
		return s.planValue(c, key)
	}
	for i := len(c.Settings) - 1; i >= 0; i-- {
		if c.Settings[i].Key == key {
			return c.Settings[i].Value, true
		}
	}
	return s.defaultValue(key)
}

// Cells returns every combination of the axes, the first axis varying
// slowest, numbered from 0. A scenario without a sweep has one cell. The
// numbering depends only on the scenario text (and --set), so `--cell N`
// names the same cell on every machine.
func (s *Scenario) Cells() []Cell {
	n := 1
	for _, a := range s.Axes {
		n *= len(a.Values)
	}
	cells := make([]Cell, n)
	for i := range cells {
		c := Cell{Index: i}
		c.Settings = slices.Clone(s.Base)
		rest := i
		stride := n
		for _, a := range s.Axes {
			stride /= len(a.Values)
			j := rest / stride
			rest %= stride
			c.Values = append(c.Values, Setting{a.Key, a.Values[j]})
			if a.Presets != nil {
				c.Settings = append(c.Settings, a.Presets[j]...)
			} else {
				c.Settings = append(c.Settings, Setting{a.Key, a.Values[j]})
			}
		}
		cells[i] = c
	}
	return cells
}

// Keys a sweep may vary besides the daemon's.
const (
	keyWorkersCount       = "workers.count"
	keyWorkersMaxInflight = "workers.max_inflight"
	keyLoadRate           = "load.rate"
	keyLoadDuration       = "load.duration"
)

// isDaemonKey reports whether key is a daemon configuration key a
// scenario may set.
func isDaemonKey(key string) bool {
	_, runner := runnerKeys[key]
	return !runner && slices.Contains(config.Keys(), key)
}

// settableKeys lists what base, sweep, where and --set accept.
func (s *Scenario) settableKeys() []string {
	var keys []string
	for _, k := range config.Keys() {
		if isDaemonKey(k) {
			keys = append(keys, k)
		}
	}
	keys = append(keys, keyWorkersCount, keyWorkersMaxInflight)
	for _, g := range s.Workers {
		keys = append(keys, "workers."+g.Name+".count", "workers."+g.Name+".max_inflight")
	}
	return append(keys, keyLoadRate, keyLoadDuration)
}

// canonical checks a value of key and returns it in canonical text.
func canonical(key string, n *yaml.Node) (string, error) {
	switch {
	case isDaemonKey(key):
		if err := config.CheckValue(key, n); err != nil {
			return "", err
		}
		if n.Kind == yaml.SequenceNode {
			list := []string{} // [] rather than null, which the daemon refuses
			for _, e := range n.Content {
				list = append(list, e.Value)
			}
			b, _ := json.Marshal(list)
			return string(b), nil
		}
		if config.IsInt(key) { // not by tag: a duration may be written 0, canonically 0s
			v, _ := strconv.Atoi(n.Value)
			return strconv.Itoa(v), nil
		}
		if d, err := time.ParseDuration(n.Value); err == nil {
			return d.String(), nil
		}
		return n.Value, nil
	case strings.HasPrefix(key, "workers."):
		p := &parser{}
		max := maxWorkers
		if strings.HasSuffix(key, ".max_inflight") {
			max = 1 << 10
		}
		v, err := p.intRange(n, 1, max)
		return strconv.Itoa(v), err
	case key == keyLoadRate:
		v, err := (&parser{}).number(n, 0.001, 1e6)
		return strconv.FormatFloat(v, 'g', -1, 64), err
	case key == keyLoadDuration:
		d, err := (&parser{}).duration(n, time.Millisecond, maxRunTime)
		return d.String(), err
	}
	return "", fmt.Errorf("unknown key %q", key)
}

// defaultValue is what a cell has for key when the scenario does not set
// it: the daemon's default, or what the workers and load say.
func (s *Scenario) defaultValue(key string) (string, bool) {
	if isDaemonKey(key) {
		var m map[string]any
		b, _ := json.Marshal(config.Default())
		json.Unmarshal(b, &m)
		switch v := m[key].(type) {
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64), true
		case string:
			return v, true
		default:
			b, _ := json.Marshal(v)
			return string(b), true
		}
	}
	return "", false
}

// planValue is a workers or load key's value in the cell's plan, which
// also holds what the scenario leaves alone (the workers' counts, the
// loads' rate): workers.count is "" when the groups differ, and so on.
func (s *Scenario) planValue(c Cell, key string) (string, bool) {
	pl, err := s.Plan(c)
	if err != nil {
		return "", true
	}
	var vals []string
	switch key {
	case keyLoadRate:
		for _, l := range pl.Load {
			vals = append(vals, strconv.FormatFloat(l.Rate, 'g', -1, 64))
		}
	case keyLoadDuration:
		for _, l := range pl.Load {
			vals = append(vals, l.Duration.String())
		}
	default: // workers.count, workers.max_inflight, workers.NAME.…
		for _, g := range pl.Workers {
			if key != keyWorkersCount && key != keyWorkersMaxInflight && !strings.HasPrefix(key, "workers."+g.Name+".") {
				continue
			}
			v := g.MaxInflight
			if strings.HasSuffix(key, ".count") {
				v = g.Count
			}
			vals = append(vals, strconv.Itoa(v))
		}
	}
	slices.Sort(vals)
	if vals = slices.Compact(vals); len(vals) == 1 {
		return vals[0], true
	}
	return "", true
}

// daemon reads the daemon section: base (fixed keys) and sweep (keys to
// vary, each with a list of values, or a preset axis whose values are
// named mappings of keys).
func (p *parser) daemon(s *Scenario, n *yaml.Node) error {
	var base, sweep *yaml.Node
	err := p.mapping(n, "daemon", map[string]func(*yaml.Node) error{
		"base":  func(v *yaml.Node) error { base = v; return nil },
		"sweep": func(v *yaml.Node) error { sweep = v; return nil },
	})
	if err != nil {
		return err
	}
	known := s.settableKeys()
	isKnown := func(k string) bool { return slices.Contains(known, k) }
	unknown := func(k *yaml.Node, where string) error {
		if why, ok := runnerKeys[k.Value]; ok {
			return p.errf(k, "%s: %s is set by the runner: %s", where, k.Value, why)
		}
		return p.errf(k, "%s: unknown key %q (known keys: %s)", where, k.Value, strings.Join(known, ", "))
	}
	given := map[string]int{}
	setting := func(k, v *yaml.Node, where string) (Setting, error) {
		if !isKnown(k.Value) {
			return Setting{}, unknown(k, where)
		}
		if prev, dup := given[k.Value]; dup {
			return Setting{}, p.errf(k, "%s: %s is already set on line %d: give each key once, in base or in the sweep", where, k.Value, prev)
		}
		given[k.Value] = k.Line
		val, err := canonical(k.Value, v)
		if err != nil {
			return Setting{}, p.errf(v, "%s: %s: %v", where, k.Value, err)
		}
		return Setting{k.Value, val}, nil
	}
	if base != nil {
		if base.Kind != yaml.MappingNode {
			return p.errf(base, "daemon.base: want a mapping of daemon keys to values")
		}
		for i := 0; i+1 < len(base.Content); i += 2 {
			set, err := setting(base.Content[i], base.Content[i+1], "daemon.base")
			if err != nil {
				return err
			}
			s.Base = append(s.Base, set)
		}
	}
	if sweep == nil {
		return nil
	}
	if sweep.Kind != yaml.MappingNode {
		return p.errf(sweep, "daemon.sweep: want a mapping of keys to lists of values")
	}
	cells := 1
	for i := 0; i+1 < len(sweep.Content); i += 2 {
		k, v := sweep.Content[i], sweep.Content[i+1]
		ax := Axis{Key: k.Value, Line: k.Line}
		switch {
		case v.Kind == yaml.MappingNode: // a preset axis: name → {key: value, …}
			if isKnown(k.Value) {
				return p.errf(k, "daemon.sweep: %s is a setting; a preset axis needs a name of its own (such as limits)", k.Value)
			}
			if !nameRE.MatchString(k.Value) {
				return p.errf(k, "daemon.sweep: preset axis %q: use lower-case letters, digits and dashes", k.Value)
			}
			if _, dup := given[k.Value]; dup {
				return p.errf(k, "daemon.sweep: axis %q given twice", k.Value)
			}
			given[k.Value] = k.Line
			var keys []string
			for j := 0; j+1 < len(v.Content); j += 2 {
				name, body := v.Content[j], v.Content[j+1]
				if slices.Contains(ax.Values, name.Value) {
					return p.errf(name, "daemon.sweep.%s: preset %q given twice", k.Value, name.Value)
				}
				if body.Kind != yaml.MappingNode {
					return p.errf(body, "daemon.sweep.%s.%s: want a mapping of keys to values", k.Value, name.Value)
				}
				var preset []Setting
				var these []string
				for m := 0; m+1 < len(body.Content); m += 2 {
					pk, pv := body.Content[m], body.Content[m+1]
					if !isKnown(pk.Value) {
						return unknown(pk, "daemon.sweep."+k.Value+"."+name.Value)
					}
					if slices.Contains(these, pk.Value) {
						return p.errf(pk, "daemon.sweep.%s.%s: %s given twice", k.Value, name.Value, pk.Value)
					}
					if line, ok := given[pk.Value]; ok {
						return p.errf(pk, "daemon.sweep.%s: %s is already set on line %d: a key is either in a preset or elsewhere", k.Value, pk.Value, line)
					}
					val, err := canonical(pk.Value, pv)
					if err != nil {
						return p.errf(pv, "daemon.sweep.%s.%s: %s: %v", k.Value, name.Value, pk.Value, err)
					}
					preset = append(preset, Setting{pk.Value, val})
					these = append(these, pk.Value)
				}
				slices.Sort(these)
				if j == 0 {
					keys = these
				} else if !slices.Equal(keys, these) {
					return p.errf(name, "daemon.sweep.%s: every preset must set the same keys (%s); %s sets %s",
						k.Value, strings.Join(keys, ", "), name.Value, strings.Join(these, ", "))
				}
				ax.Values = append(ax.Values, name.Value)
				ax.Presets = append(ax.Presets, preset)
			}
			for _, key := range keys {
				given[key] = k.Line
			}
		case v.Kind == yaml.SequenceNode:
			if !isKnown(k.Value) {
				return unknown(k, "daemon.sweep")
			}
			if prev, dup := given[k.Value]; dup {
				return p.errf(k, "daemon.sweep: %s is already set on line %d: give each key once, in base or in the sweep", k.Value, prev)
			}
			given[k.Value] = k.Line
			for _, e := range v.Content {
				val, err := canonical(k.Value, e)
				if err != nil {
					return p.errf(e, "daemon.sweep: %s: %v", k.Value, err)
				}
				if slices.Contains(ax.Values, val) {
					return p.errf(e, "daemon.sweep: %s: %s given twice", k.Value, val)
				}
				ax.Values = append(ax.Values, val)
			}
		default:
			return p.errf(v, "daemon.sweep: %s: want a list of values, such as [10, 100]", k.Value)
		}
		if len(ax.Values) == 0 {
			return p.errf(v, "daemon.sweep: %s: give at least one value", k.Value)
		}
		cells *= len(ax.Values)
		if cells > maxCells {
			return p.errf(k, "daemon.sweep: %d cells or more, at most %d: sweep fewer values", cells, maxCells)
		}
		s.Axes = append(s.Axes, ax)
	}
	return nil
}

// check validates what crosses sections: every cell's daemon
// configuration, and the worker and load settings it implies.
func (p *parser) check(s *Scenario, root *yaml.Node) error {
	cells := s.Cells()
	for _, c := range cells {
		if _, err := s.Plan(c); err != nil {
			line := root
			if len(s.Axes) > 0 {
				line = &yaml.Node{Line: s.Axes[0].Line}
			}
			return p.errf(line, "cell %d (%s): %v", c.Index, c.Label(), err)
		}
	}
	// An expectation that applies to no cell would pass unnoticed.
	for _, a := range s.Assert {
		if !slices.ContainsFunc(cells, func(c Cell) bool { return a.Applies(s, c) }) {
			return p.errf(&yaml.Node{Line: a.Line}, "assert: where %s matches no cell of the sweep", a)
		}
	}
	return nil
}

// A Plan is what one cell runs: the daemon configuration (without the
// keys the runner sets), the worker groups and the loads, with the cell's
// settings applied.
type Plan struct {
	Cell    Cell
	Config  []Setting // daemon keys, in order
	Workers []WorkerGroup
	Load    []Load
}

// Plan applies a cell's settings. An error means the cell cannot run: the
// daemon would refuse its configuration, say.
func (s *Scenario) Plan(c Cell) (*Plan, error) {
	pl := &Plan{Cell: c, Workers: slices.Clone(s.Workers), Load: slices.Clone(s.Load)}
	for _, set := range c.Settings {
		switch {
		case isDaemonKey(set.Key):
			pl.Config = append(pl.Config, set)
		case set.Key == keyWorkersCount || set.Key == keyWorkersMaxInflight:
			for i := range pl.Workers {
				setWorker(&pl.Workers[i], set)
			}
		case strings.HasPrefix(set.Key, "workers."):
			for i := range pl.Workers {
				if strings.HasPrefix(set.Key, "workers."+pl.Workers[i].Name+".") {
					setWorker(&pl.Workers[i], set)
				}
			}
		case set.Key == keyLoadRate:
			r, _ := strconv.ParseFloat(set.Value, 64)
			for i := range pl.Load {
				if pl.Load[i].Concurrency > 0 {
					return nil, fmt.Errorf("load.rate sets the open model's rate, but a load uses concurrency")
				}
				pl.Load[i].Rate = r
			}
		case set.Key == keyLoadDuration:
			d, _ := time.ParseDuration(set.Value)
			for i := range pl.Load {
				if pl.Load[i].Count > 0 {
					return nil, fmt.Errorf("load.duration sets how long a load runs, but a load stops after a count")
				}
				if pl.Load[i].At+d > maxRunTime {
					return nil, fmt.Errorf("load.duration %s: a load starting at %s would run past %s", d, pl.Load[i].At, maxRunTime)
				}
				pl.Load[i].Duration = d
			}
		}
	}
	total := 0
	for _, g := range pl.Workers {
		total += g.Count
	}
	if total > maxWorkers {
		return nil, fmt.Errorf("%d worker processes in all, at most %d", total, maxWorkers)
	}
	if _, err := config.Parse("daemon configuration", pl.ConfigYAML("/run/portshare.sock", []string{"127.0.0.1"})); err != nil {
		// The lines are the generated file's, which nobody sees.
		return nil, errors.New(generatedLine.ReplaceAllString(err.Error(), ""))
	}
	return pl, nil
}

var generatedLine = regexp.MustCompile(`^daemon configuration(:\d+)?: `)

func setWorker(g *WorkerGroup, set Setting) {
	v, _ := strconv.Atoi(set.Value)
	if strings.HasSuffix(set.Key, ".count") {
		g.Count = v
	} else {
		g.MaxInflight = v
	}
}

// ConfigYAML is the daemon's configuration file for this plan.
func (pl *Plan) ConfigYAML(controlSocket string, listen []string) []byte {
	var b strings.Builder
	b.WriteString("# written by portshare tune for cell " + strconv.Itoa(pl.Cell.Index) + "\n")
	fmt.Fprintf(&b, "control_socket: %q\n", controlSocket)
	addrs, _ := json.Marshal(listen)
	fmt.Fprintf(&b, "listen_addresses: %s\n", addrs)
	for _, set := range pl.Config {
		switch {
		case config.IsInt(set.Key), strings.HasPrefix(set.Value, "["):
			fmt.Fprintf(&b, "%s: %s\n", set.Key, set.Value)
		default:
			fmt.Fprintf(&b, "%s: %q\n", set.Key, set.Value)
		}
	}
	return []byte(b.String())
}
