package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Phase says whether an event opens, closes or is the whole of a fault's
// effect.
type Phase string

const (
	Start   Phase = "start"   // the fault took effect
	End     Phase = "end"     // it stopped
	Instant Phase = "instant" // it happened at one moment (a crash, a kill)
)

// An Event is a fault taking or leaving effect. Reports shade the span
// between a Start and its End on their timelines; a Start without an End
// lasted to the end of the run.
type Event struct {
	Time   time.Time `json:"time"`
	Fault  string    `json:"fault"` // the spec as written
	Name   string    `json:"name"`
	Kind   Kind      `json:"kind"`
	Phase  Phase     `json:"phase"`
	Source string    `json:"source,omitempty"` // who applied it: a worker's name, "load", "daemon"
	Detail string    `json:"detail,omitempty"`
}

// A Log collects events and, if given a writer, writes each as one JSON
// line as it happens (the fault-events file) and to a slog logger. It is
// safe for concurrent use; a nil *Log drops everything.
type Log struct {
	source string
	log    *slog.Logger

	mu     sync.Mutex
	w      io.Writer
	events []Event
	err    error
}

// NewLog returns a log of events applied by source. w (JSON lines) and
// logger may be nil.
func NewLog(source string, w io.Writer, logger *slog.Logger) *Log {
	return &Log{source: source, w: w, log: logger}
}

// Add records that spec s reached phase p, now.
func (l *Log) Add(s Spec, p Phase, detail string) {
	if l == nil {
		return
	}
	e := Event{Time: time.Now(), Fault: s.text, Name: s.Name, Kind: s.Kind, Phase: p, Source: l.source, Detail: detail}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	if l.w != nil && l.err == nil {
		b, _ := json.Marshal(e)
		_, l.err = l.w.Write(append(b, '\n'))
	}
	if l.log != nil {
		l.log.Info("fault "+string(p), "fault", e.Fault, "kind", e.Kind, "detail", detail)
	}
}

// Events returns the events so far, oldest first.
func (l *Log) Events() []Event {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// Err is the first error writing to the log's writer, if any.
func (l *Log) Err() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// ReadEvents reads a fault-events file (one JSON event a line), such as
// `portshare worker --fault-events FILE` writes. A process killed while
// writing can leave a last partial line; it is ignored.
func ReadEvents(r io.Reader) ([]Event, error) {
	var events []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	var bad error
	for sc.Scan() {
		line++
		if bad != nil {
			return nil, bad // a bad line that was not the last
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Name == "" {
			bad = fmt.Errorf("fault events line %d: not an event", line)
			continue
		}
		events = append(events, e)
	}
	return events, sc.Err()
}
