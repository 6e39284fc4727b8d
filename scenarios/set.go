package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Set overrides a scenario's setting, as `--set KEY=VALUE` does: one
// value fixes the key for every cell, several (comma-separated) sweep it;
// a value in brackets is one list value (allow_accounts=[root,uid:1000]).
// A key swept by the file loses its sweep; a preset axis is narrowed to
// the presets named. The cells are numbered afresh, so every machine
// sharing a sweep must give the same --set flags. Errors say what to fix;
// after one, the scenario may be half changed and must not be run.
func (s *Scenario) Set(arg string) error {
	key, value, ok := strings.Cut(arg, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" || value == "" {
		return fmt.Errorf("--set %q: want KEY=VALUE or KEY=V1,V2 (a sweep)", arg)
	}
	raw := strings.Split(value, ",")
	if strings.HasPrefix(strings.TrimSpace(value), "[") {
		raw = []string{value} // a list is one value (allow_accounts), not a sweep
	}
	if i := slices.IndexFunc(s.Axes, func(a Axis) bool { return a.Key == key && a.Presets != nil }); i >= 0 {
		ax := Axis{Key: key, Line: s.Axes[i].Line}
		for _, name := range raw {
			j := slices.Index(s.Axes[i].Values, strings.TrimSpace(name))
			if j < 0 {
				return fmt.Errorf("--set %s: no preset %q (presets: %s)", key, name, strings.Join(s.Axes[i].Values, ", "))
			}
			if slices.Contains(ax.Values, s.Axes[i].Values[j]) {
				return fmt.Errorf("--set %s: preset %s given twice", key, s.Axes[i].Values[j])
			}
			ax.Values = append(ax.Values, s.Axes[i].Values[j])
			ax.Presets = append(ax.Presets, s.Axes[i].Presets[j])
		}
		s.Axes[i] = ax
		return s.recheck()
	}
	if !slices.Contains(s.settableKeys(), key) {
		if why, ok := runnerKeys[key]; ok {
			return fmt.Errorf("--set %s: set by the runner: %s", key, why)
		}
		return fmt.Errorf("--set: unknown key %q (known keys: %s)", key, strings.Join(s.settableKeys(), ", "))
	}
	for _, a := range s.Axes {
		for _, preset := range a.Presets {
			for _, set := range preset {
				if set.Key == key {
					return fmt.Errorf("--set %s: the preset axis %s sets it; choose presets with --set %s=NAME", key, a.Key, a.Key)
				}
			}
		}
	}
	var values []string
	for _, r := range raw {
		n := &yaml.Node{}
		if err := yaml.Unmarshal([]byte(strings.TrimSpace(r)), n); err != nil || len(n.Content) != 1 {
			return fmt.Errorf("--set %s: bad value %q", key, r)
		}
		v, err := canonical(key, n.Content[0])
		if err != nil {
			return fmt.Errorf("--set %s: %v", key, err)
		}
		if slices.Contains(values, v) { // as in a file's sweep: the cells would repeat
			return fmt.Errorf("--set %s: %s given twice", key, v)
		}
		values = append(values, v)
	}
	s.Base = slices.DeleteFunc(s.Base, func(b Setting) bool { return b.Key == key })
	s.Axes = slices.DeleteFunc(s.Axes, func(a Axis) bool { return a.Key == key })
	if len(values) == 1 {
		s.Base = append(s.Base, Setting{key, values[0]})
	} else {
		s.Axes = append(s.Axes, Axis{Key: key, Values: values})
	}
	return s.recheck()
}

// recheck validates every cell again after a change.
func (s *Scenario) recheck() error {
	n := 1
	for _, a := range s.Axes {
		n *= len(a.Values)
	}
	if n > maxCells {
		return fmt.Errorf("--set: %d cells, at most %d", n, maxCells)
	}
	for _, c := range s.Cells() {
		if _, err := s.Plan(c); err != nil {
			return fmt.Errorf("--set: cell %d (%s): %v", c.Index, c.Label(), err)
		}
	}
	return nil
}
