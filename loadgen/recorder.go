package loadgen

import (
	"maps"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1 µs to one hour, in microseconds. Whole-run histograms
// keep 3 significant digits; the per-second ones, which only give the time
// series its p50 and p99, keep 2.
const (
	histMin     = 1
	histMax     = int64(time.Hour / time.Microsecond)
	histDigits  = 3
	secondDigit = 2
	// openSeconds is how many recent seconds keep a histogram of their own,
	// so records that arrive a little out of order still count.
	openSeconds = 3
	// maxErrorSamples bounds the distinct error messages kept.
	maxErrorSamples = 20
)

func newHist(digits int) *hdr.Histogram { return hdr.New(histMin, histMax, digits) }

func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	switch {
	case us < histMin:
		return histMin
	case us > histMax:
		return histMax
	}
	return us
}

// Phase names, the keys of Result.Phases.
const (
	PhaseConnect   = "connect"    // TCP connect (new connections only)
	PhaseHandshake = "handshake"  // connected → PreambleAck, or request sent → first response byte
	PhaseMessage   = "message"    // one SizedEnvelope round trip
	PhaseSession   = "session"    // intended send time → outcome, every outcome
	PhaseSessionOK = "session_ok" // the same, ok sessions only
)

var phaseNames = []string{PhaseConnect, PhaseHandshake, PhaseMessage, PhaseSession, PhaseSessionOK}

// Phases is what a session reports about itself while it runs. Zero
// durations are phases it did not reach (or, for Connect, a reused
// connection).
type Phases struct {
	Connect   time.Duration
	Handshake time.Duration
	rec       *recorder
}

// Message records one message round trip.
func (p *Phases) Message(d time.Duration) {
	if p.rec != nil {
		p.rec.record(PhaseMessage, d)
	}
}

// recorder accumulates a run's measurements. It is safe for concurrent
// use; its memory does not grow with the number of sessions.
type recorder struct {
	start    time.Time
	inFlight atomic.Int64

	mu       sync.Mutex
	hists    map[string]*hdr.Histogram
	outcomes map[string]int64
	errors   map[string]int64
	attempts int64
	late     int64
	series   []Second
	secHists map[int]*hdr.Histogram // open seconds' latencies
	// closedBefore: the seconds before it have their percentiles. Records
	// close seconds as time moves on (records arrive in about the order
	// sessions end: live, or from hey's output after the run).
	closedBefore int
	notes        []string
	// plan picks the sessions client faults take (Start); faults are
	// their sessions, by index: kept apart, so that they never show in
	// the normal sessions' measurements.
	plan   *faultPlan
	faults []faultRec
}

// faultRec is what the recorder keeps of one client fault's sessions.
type faultRec struct {
	sessions int64 // started so far: the next one's number
	outcomes map[string]int64
	errors   map[string]int64
	hist     *hdr.Histogram // session latency
}

// Second is one point of the time series: what happened in the second
// [T, T+1) after the start. Attempts and Late count sessions started in
// it; the outcomes and percentiles count sessions that ended in it.
type Second struct {
	T        int              `json:"t"`
	Attempts int64            `json:"attempts"`
	Late     int64            `json:"late,omitempty"`
	OK       int64            `json:"ok"`
	Errors   int64            `json:"errors"`
	Outcomes map[string]int64 `json:"outcomes,omitempty"` // every class but ok
	InFlight int64            `json:"in_flight"`
	P50us    int64            `json:"p50_us"`
	P99us    int64            `json:"p99_us"`
}

// newRecorder starts recording; offsets in the time series are from start.
func newRecorder(start time.Time) *recorder {
	r := &recorder{
		start:    start,
		hists:    map[string]*hdr.Histogram{},
		outcomes: map[string]int64{},
		errors:   map[string]int64{},
		secHists: map[int]*hdr.Histogram{},
	}
	for _, p := range phaseNames {
		r.hists[p] = newHist(histDigits)
	}
	return r
}

// second returns the series point for time at, growing the series.
// Callers hold mu.
func (r *recorder) second(at time.Time) *Second {
	s := int(at.Sub(r.start) / time.Second)
	if s < 0 {
		s = 0
	}
	for len(r.series) <= s {
		r.series = append(r.series, Second{T: len(r.series)})
	}
	return &r.series[s]
}

// Started counts a normal session started at time at; late says it
// started later than its intended time by more than the run allows.
func (r *recorder) Started(at time.Time, late bool) {
	r.mu.Lock()
	r.started(at, late)
	r.mu.Unlock()
}

// started is Started; callers hold mu.
func (r *recorder) started(at time.Time, late bool) {
	sec := r.second(at)
	sec.Attempts++
	r.attempts++
	if late {
		sec.Late++
		r.late++
	}
}

// setPlan makes Start pick client faults' sessions by p, and makes room
// for their measurements.
func (r *recorder) setPlan(p *faultPlan) {
	if p == nil {
		return
	}
	r.plan = p
	for range p.clients {
		r.faults = append(r.faults, faultRec{outcomes: map[string]int64{}, errors: map[string]int64{}, hist: newHist(histDigits)})
	}
}

// Start counts a session started at time now, intended at offset from the
// run's start (late as for Started), and says which client fault, if any,
// takes it in a normal session's place: k its index and n its number
// among the fault's sessions, or k = -1 for a normal session. Sessions
// must start in the order they are intended. A faulty session counts in
// the run's attempts and late sends, not in the normal sessions' time
// series.
func (r *recorder) Start(offset time.Duration, now time.Time, late bool) (k int, n int64) {
	r.mu.Lock()
	if k = r.plan.pick(offset); k < 0 {
		r.started(now, late)
	} else {
		r.attempts++
		if late {
			r.late++
		}
		n = r.faults[k].sessions
		r.faults[k].sessions++
	}
	r.mu.Unlock()
	return k, n
}

// FinishedFault records a session of client fault k that ended with
// outcome after latency (from its intended send time), apart from the
// normal sessions.
func (r *recorder) FinishedFault(k int, latency time.Duration, outcome string, err error) {
	sample := sampleOf(outcome, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &r.faults[k]
	f.outcomes[outcome]++
	if sample != "" {
		addSample(f.errors, sample, 1)
	}
	if outcome != Aborted {
		f.hist.RecordValue(micros(latency))
	}
}

// faultResults are the client faults' sections of the result, by index
// (without their names and ratios, which the engine fills in).
func (r *recorder) faultResults() []*FaultResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*FaultResult, len(r.faults))
	for k, f := range r.faults {
		fr := &FaultResult{Sessions: f.sessions, Outcomes: maps.Clone(f.outcomes), Latency: *newLatency(f.hist)}
		if len(f.errors) > 0 {
			fr.Errors = maps.Clone(f.errors)
		}
		out[k] = fr
	}
	return out
}

// Finished records a session that ended at time end with outcome after
// latency (from its intended send time). err, when the outcome is not ok,
// is kept as a sample of what went wrong.
func (r *recorder) Finished(end time.Time, latency time.Duration, outcome string, ph *Phases, err error) {
	us := micros(latency)
	sample := sampleOf(outcome, err) // formatted before the lock every session takes
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome]++
	if ph != nil {
		if ph.Connect > 0 {
			r.hists[PhaseConnect].RecordValue(micros(ph.Connect))
		}
		if ph.Handshake > 0 {
			r.hists[PhaseHandshake].RecordValue(micros(ph.Handshake))
		}
	}
	if sample != "" {
		addSample(r.errors, sample, 1)
	}
	sec := r.second(end)
	if outcome == OK {
		sec.OK++
	} else {
		sec.Errors++
		if sec.Outcomes == nil {
			sec.Outcomes = map[string]int64{}
		}
		sec.Outcomes[outcome]++
	}
	if outcome == Aborted {
		return // cut short by the caller: its time says nothing about the target
	}
	r.hists[PhaseSession].RecordValue(us)
	if outcome == OK {
		r.hists[PhaseSessionOK].RecordValue(us)
	}
	if sec.T < r.closedBefore {
		return // a straggler: its second's percentiles are already computed
	}
	h := r.secHists[sec.T]
	if h == nil {
		h = newHist(secondDigit)
		r.secHists[sec.T] = h
		r.closeSeconds(sec.T - openSeconds + 1)
	}
	h.RecordValue(us)
}

// Untimed records n sessions known only by outcome and error message (hey
// reports failed requests that way): they count in the outcomes, not in
// the latencies or the time series.
func (r *recorder) Untimed(outcome, msg string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome] += n
	if outcome != OK && outcome != Aborted && msg != "" {
		addSample(r.errors, errorSample(msg), n)
	}
}

// localAddr matches the local address in Go's socket error messages
// ("read tcp 127.0.0.1:40512->127.0.0.1:8808: …"): each session has its
// own, and one cause must not fill every sample slot.
var localAddr = regexp.MustCompile(`[0-9A-Fa-f.:\[\]]+:[0-9]+->`)

// errorSample is an error message as Result.Errors keys it.
func errorSample(msg string) string { return localAddr.ReplaceAllString(msg, "") }

// sampleOf is the error sample a session that ended with outcome and err
// leaves: none ("") for ok and aborted sessions, or without an error.
func sampleOf(outcome string, err error) string {
	if err == nil || outcome == OK || outcome == Aborted {
		return ""
	}
	return errorSample(err.Error())
}

// addSample counts n of error message msg in samples, which keeps at most
// maxErrorSamples distinct messages.
func addSample(samples map[string]int64, msg string, n int64) {
	if _, ok := samples[msg]; ok || len(samples) < maxErrorSamples {
		samples[msg] += n
	}
}

func (r *recorder) record(phase string, d time.Duration) {
	r.mu.Lock()
	r.hists[phase].RecordValue(micros(d))
	r.mu.Unlock()
}

// Note adds a caveat to the result.
func (r *recorder) Note(s string) {
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
}

// closeSeconds computes p50 and p99 of every open second before s and
// frees its histogram. Callers hold mu.
func (r *recorder) closeSeconds(before int) {
	if before <= r.closedBefore {
		return
	}
	r.closedBefore = before
	for t, h := range r.secHists {
		if t < before {
			r.series[t].P50us = h.ValueAtQuantile(50)
			r.series[t].P99us = h.ValueAtQuantile(99)
			delete(r.secHists, t)
		}
	}
}

// Tick stamps the second that just ended with the sessions in flight; the
// engines call it once a second. It returns a snapshot for a progress
// display.
func (r *recorder) Tick(now time.Time) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.second(now).T
	snap := Snapshot{Elapsed: now.Sub(r.start), Attempts: r.attempts, Late: r.late, InFlight: r.inFlight.Load()}
	for o, n := range r.outcomes {
		if o == OK {
			snap.OK += n
		} else {
			snap.Errors += n
		}
	}
	if t > 0 {
		prev := &r.series[t-1]
		prev.InFlight = snap.InFlight
		snap.Rate = float64(prev.Attempts)
		p99 := prev.P99us
		if h := r.secHists[t-1]; h != nil {
			p99 = h.ValueAtQuantile(99)
		}
		snap.P99 = time.Duration(p99) * time.Microsecond
	}
	return snap
}

// Snapshot is a run's state for a progress display.
type Snapshot struct {
	Elapsed      time.Duration
	Attempts, OK int64
	Errors, Late int64
	InFlight     int64
	Rate         float64       // attempts in the last whole second
	P99          time.Duration // of the sessions that ended in the last whole second
}

// result closes every second and builds the Result (without the run's
// settings, which the engine fills in).
func (r *recorder) result(end time.Time) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.second(end)
	r.closeSeconds(len(r.series))
	res := &Result{
		Outcomes:  map[string]int64{},
		Phases:    map[string]*Latency{},
		Attempts:  r.attempts,
		LateSends: r.late,
		Series:    append([]Second(nil), r.series...),
		Notes:     append([]string(nil), r.notes...),
	}
	for o, n := range r.outcomes {
		res.Outcomes[o] = n
	}
	if len(r.errors) > 0 {
		res.Errors = map[string]int64{}
		for m, n := range r.errors {
			res.Errors[m] = n
		}
	}
	for name, h := range r.hists {
		res.Phases[name] = newLatency(h)
	}
	res.Latency = *res.Phases[PhaseSession]
	res.Latency.Hist = ""
	sort.Strings(res.Notes)
	return res
}
