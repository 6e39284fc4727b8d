package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteSummary writes a human-readable summary of r: the run, its outcome
// classes, and a table of latency percentiles per phase.
func WriteSummary(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	model := fmt.Sprintf("closed model, %d clients", r.Concurrency)
	if r.Model == "open" {
		model = "open model, " + r.Arrival
	}
	fmt.Fprintf(tw, "target\t%s (%s, %s)\n", r.Target, model, r.Engine)
	fmt.Fprintf(tw, "sessions\t%d in %.1fs: %.1f/s achieved", r.Attempts, float64(r.Window), r.AchievedRate)
	if r.Model == "open" {
		fmt.Fprintf(tw, " of %.1f/s intended, %d late sends (%d never sent)", r.TargetRate, r.LateSends, r.Unsent)
	}
	fmt.Fprintln(tw)
	keys := slices.Sorted(maps.Keys(r.ClientFaults))
	var faulty int64
	for _, k := range keys {
		faulty += r.ClientFaults[k].Sessions
	}
	if len(keys) > 0 {
		fmt.Fprintf(tw, "outcomes\t%s (the %d normal sessions)\n", formatOutcomes(r.Outcomes), r.Attempts-faulty)
	} else {
		fmt.Fprintf(tw, "outcomes\t%s\n", formatOutcomes(r.Outcomes))
	}
	for _, k := range keys {
		f := r.ClientFaults[k]
		fmt.Fprintf(tw, "client fault\t%s (ratio %g): %d sessions: %s", k, f.Ratio, f.Sessions, formatOutcomes(f.Outcomes))
		if l := f.Latency; l.Count > 0 {
			fmt.Fprintf(tw, "; session p50 %s p99 %s max %s", us(l.P50), us(l.P99), us(l.Max))
		}
		fmt.Fprintln(tw)
	}
	if k := r.TCPExt; k.ListenOverflows() > 0 || k.ListenDrops() > 0 {
		fmt.Fprintf(tw, "kernel\tListenOverflows +%d, ListenDrops +%d (this network namespace: accept queues overflowed)\n",
			k.ListenOverflows(), k.ListenDrops())
	}
	if r.Stopped != "" {
		fmt.Fprintf(tw, "stopped\t%s\n", r.Stopped)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	if len(r.Errors) > 0 {
		msgs := slices.Sorted(maps.Keys(r.Errors))
		for i, m := range msgs {
			if i == 3 {
				fmt.Fprintf(tw, "\t… %d more kinds (--json has them)\n", len(msgs)-3)
				break
			}
			fmt.Fprintf(tw, "error ×%d\t%s\n", r.Errors[m], m)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "phase\tcount\tp50\tp90\tp99\tp99.9\tmax")
	for _, name := range phaseNames {
		l := r.Phases[name]
		if l == nil || l.Count == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", name, l.Count, us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max))
	}
	return tw.Flush()
}

// formatOutcomes lists outcome classes, ok first, then by count.
func formatOutcomes(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		switch {
		case a == OK:
			return -1
		case b == OK:
			return 1
		}
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// us formats microseconds for people.
func us(v int64) string {
	return FormatDuration(time.Duration(v) * time.Microsecond)
}

// FormatDuration prints a latency with three significant digits: 87µs,
// 1.23ms, 2.5s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < time.Second:
		return trimZeros(fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))) + "ms"
	}
	return trimZeros(fmt.Sprintf("%.2f", d.Seconds())) + "s"
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
