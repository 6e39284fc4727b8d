package loadgen

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/portshare/portshare/faults"
)

// FormatVersion is the version of the result file format (FORMAT.md).
const FormatVersion = 1

// Result is what a run measured; its JSON form is the result file
// (FORMAT.md) that reports and comparisons read.
type Result struct {
	Version  int    `json:"version"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	Engine   string `json:"engine"` // "portshare", or "hey" for closed-model HTTP
	Model    string `json:"model"`  // "open" or "closed"
	Arrival  string `json:"arrival,omitempty"`

	TargetRate   float64 `json:"target_rate"`           // mean intended arrival rate (open model), sessions/s
	AchievedRate float64 `json:"achieved_rate"`         // sessions started per second of the send window
	Concurrency  int     `json:"concurrency,omitempty"` // closed model
	LateSends    int64   `json:"late_sends"`            // open model: started late, or never (Unsent)
	Unsent       int64   `json:"unsent"`                // arrivals due in the run that were never sent
	Attempts     int64   `json:"attempts"`              // sessions started
	MaxInFlight  int     `json:"max_in_flight"`         // the cap on sessions in flight
	Messages     int     `json:"messages,omitempty"`
	MessageSize  int     `json:"message_size,omitempty"`

	Started  time.Time `json:"started"`
	Duration Seconds   `json:"duration_s"` // start → last outcome
	Window   Seconds   `json:"send_window_s"`
	Stopped  string    `json:"stopped,omitempty"` // why the run ended early, if it did

	Outcomes map[string]int64    `json:"outcomes"`
	Latency  Latency             `json:"latency_us"` // = Phases["session"] without its histogram
	Phases   map[string]*Latency `json:"phases"`
	Series   []Second            `json:"series"`
	Errors   map[string]int64    `json:"errors,omitempty"` // samples of error messages
	Notes    []string            `json:"notes,omitempty"`

	// ClientFaults holds the sessions of each client fault
	// (Options.ClientFaults), keyed by the spec as written. Attempts
	// counts them; Outcomes, Latency, Phases, Series and Errors are the
	// normal sessions' only.
	ClientFaults map[string]*FaultResult `json:"client_faults,omitempty"`
	// FaultEvents are the client faults' windows opening (faults.Start)
	// and closing (faults.End) during the send phase; a window still open
	// when it ended has no End. Like the series, they belong to one run.
	FaultEvents []faults.Event `json:"fault_events,omitempty"`

	// TCPExt is how the kernel's listen-queue counters (KernelCounters)
	// moved over the run, in the load generator's network namespace: a
	// daemon on the same host shares it, so an accept queue that
	// overflowed shows here from the kernel's side. Absent where /proc
	// cannot be read.
	TCPExt faults.TCPExt `json:"tcp_ext,omitempty"`
}

// KernelCounters are the TcpExt counters a result records: connections
// dropped because an accept queue was full (ListenOverflows, and
// ListenDrops, which counts every listen-side drop), and the SYN queue's
// drops and cookies.
var KernelCounters = []string{"ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies", "SyncookiesSent"}

// kernelDelta is after−before of the KernelCounters, or nil if either
// reading failed.
func kernelDelta(before, after faults.TCPExt) faults.TCPExt {
	if before == nil || after == nil {
		return nil
	}
	d := after.Sub(before)
	out := make(faults.TCPExt, len(KernelCounters))
	for _, k := range KernelCounters {
		out[k] = d[k]
	}
	return out
}

// FaultResult is what the sessions of one client fault came to.
type FaultResult struct {
	Name     string           `json:"name"`     // the fault's name, e.g. "silent"
	Ratio    float64          `json:"ratio"`    // the share of the sessions it was given
	Sessions int64            `json:"sessions"` // its sessions started; Outcomes add up to it
	Outcomes map[string]int64 `json:"outcomes"`
	Latency  Latency          `json:"latency_us"`       // intended start → outcome, with its histogram (hdr)
	Errors   map[string]int64 `json:"errors,omitempty"` // samples of error messages
}

// Seconds is a duration written as a number of seconds.
type Seconds float64

func (s Seconds) D() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// Latency summarises one histogram in microseconds and, in Phases, carries
// the histogram itself (HdrHistogram's V2 compressed encoding, base64) so
// that results can be merged and re-read exactly.
type Latency struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
	Hist  string  `json:"hdr,omitempty"`

	h *hdr.Histogram
}

func newLatency(h *hdr.Histogram) *Latency {
	l := &Latency{
		Count: h.TotalCount(), Min: h.Min(), Mean: h.Mean(), Max: h.Max(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9),
		h: h,
	}
	if enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase); err == nil {
		l.Hist = string(enc)
	}
	return l
}

// Histogram returns the latency histogram (microseconds), decoding it
// from the file if need be.
func (l *Latency) Histogram() (*hdr.Histogram, error) {
	if l.h != nil {
		return l.h, nil
	}
	h, err := decodeHist(l.Hist)
	if err != nil {
		return nil, err
	}
	l.h = h
	return h, nil
}

// decodeHist decodes an encoded histogram from a file that may be damaged:
// the library indexes its input without checking its length.
func decodeHist(s string) (h *hdr.Histogram, err error) {
	if s == "" {
		return newHist(histDigits), nil
	}
	if err := checkHistShape(s); err != nil {
		return nil, fmt.Errorf("histogram: %v", err)
	}
	defer func() {
		if recover() != nil {
			h, err = nil, fmt.Errorf("histogram: damaged HdrHistogram encoding")
		}
	}()
	return hdr.Decode([]byte(s))
}

// maxHistPayload bounds a histogram's decompressed size: ours take well
// under a megabyte.
const maxHistPayload = 4 << 20

// checkHistShape checks, before the library allocates anything, that s is
// a V2 compressed histogram of this format's range and precision whose
// payload is not a decompression bomb.
func checkHistShape(s string) error {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) < 8 {
		return fmt.Errorf("not an HdrHistogram V2 compressed encoding")
	}
	n := binary.BigEndian.Uint32(raw[4:8])
	if int64(n) > int64(len(raw)-8) {
		return fmt.Errorf("truncated")
	}
	z, err := zlib.NewReader(bytes.NewReader(raw[8 : 8+n]))
	if err != nil {
		return fmt.Errorf("damaged compression: %v", err)
	}
	defer z.Close()
	plain, err := io.ReadAll(io.LimitReader(z, maxHistPayload+1))
	if err != nil || len(plain) < 40 || len(plain) > maxHistPayload {
		return fmt.Errorf("damaged or oversized payload")
	}
	digits := int32(binary.BigEndian.Uint32(plain[12:16]))
	lowest := int64(binary.BigEndian.Uint64(plain[16:24]))
	highest := int64(binary.BigEndian.Uint64(plain[24:32]))
	if digits != histDigits || lowest != histMin || highest != histMax {
		return fmt.Errorf("range %d–%d with %d digits, not this format's %d–%d with %d", lowest, highest, digits, histMin, histMax, histDigits)
	}
	return nil
}

// WriteJSON writes r as a result file.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResult reads a result file and checks its version and histograms.
func ReadResult(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("result file: %v", err)
	}
	if r.Version != FormatVersion {
		return nil, fmt.Errorf("result file: format version %d, this build reads %d", r.Version, FormatVersion)
	}
	for i, s := range r.Series {
		if s.T != i {
			return nil, fmt.Errorf("result file: series point %d is for second %d; points are one per second from 0", i, s.T)
		}
	}
	for name, l := range r.Phases {
		if l == nil {
			return nil, fmt.Errorf("result file: phase %q is null", name)
		}
		if _, err := l.Histogram(); err != nil {
			return nil, fmt.Errorf("result file: phase %q: %v", name, err)
		}
	}
	for key, f := range r.ClientFaults {
		switch {
		case f == nil:
			return nil, fmt.Errorf("result file: client fault %q is null", key)
		case !(f.Ratio > 0 && f.Ratio <= 1):
			return nil, fmt.Errorf("result file: client fault %q: ratio %g is not above 0 and at most 1", key, f.Ratio)
		case f.Sessions < 0:
			return nil, fmt.Errorf("result file: client fault %q: %d sessions", key, f.Sessions)
		}
		if _, err := f.Latency.Histogram(); err != nil {
			return nil, fmt.Errorf("result file: client fault %q: %v", key, err)
		}
	}
	for k, n := range r.TCPExt {
		if n < 0 {
			return nil, fmt.Errorf("result file: tcp_ext %q is %d: counters only grow", k, n)
		}
	}
	for i, ev := range r.FaultEvents {
		if ev.Name == "" || ev.Phase != faults.Start && ev.Phase != faults.End && ev.Phase != faults.Instant {
			return nil, fmt.Errorf("result file: fault event %d is not an event (it needs a name and a phase of start, end or instant)", i)
		}
	}
	return &r, nil
}

// Merge pools the results of repeated runs of the same load (same target,
// model, arrivals, concurrency and messages) into one: outcome counts,
// attempts, late sends and histograms add up exactly, so percentiles are
// those of all sessions together; rates, durations and windows are the
// runs' means. A time series belongs to one run and is not merged (the
// merged result has none), nor are fault events. Client fault sections
// add up like the rest; the runs must have had the same client faults
// with the same ratios. The kernel counters (TCPExt) add up if every run
// has them, and are left out, with a note, otherwise. Stopped lists every
// run's reason, if any run stopped early.
func Merge(rs ...*Result) (*Result, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("merge: no results")
	}
	first := rs[0]
	m := &Result{
		Version: FormatVersion, Target: first.Target, Protocol: first.Protocol, Engine: first.Engine,
		Model: first.Model, Arrival: first.Arrival, Messages: first.Messages, MessageSize: first.MessageSize,
		Started: first.Started, Outcomes: map[string]int64{}, Phases: map[string]*Latency{},
	}
	// The histograms pooled so far, by phase and by client fault.
	hists, faultHists := map[string]*hdr.Histogram{}, map[string]*hdr.Histogram{}
	var stopped []string
	missingKernel := 0
	for _, r := range rs {
		if r.Target != first.Target || r.Protocol != first.Protocol || r.Model != first.Model || r.Arrival != first.Arrival ||
			r.Concurrency != first.Concurrency || r.Messages != first.Messages || r.MessageSize != first.MessageSize {
			return nil, fmt.Errorf("merge: results of different loads do not mix (%s %s %s against %s %s %s)",
				first.Model, first.Arrival, first.Target, r.Model, r.Arrival, r.Target)
		}
		if err := sameClientFaults(first, r); err != nil {
			return nil, err
		}
		if err := m.mergeClientFaults(r, faultHists); err != nil {
			return nil, err
		}
		if r.Started.Before(m.Started) {
			m.Started = r.Started
		}
		n := float64(len(rs))
		m.TargetRate += r.TargetRate / n
		m.AchievedRate += r.AchievedRate / n
		m.Duration += r.Duration / Seconds(n)
		m.Window += r.Window / Seconds(n)
		m.Concurrency = r.Concurrency
		m.MaxInFlight = max(m.MaxInFlight, r.MaxInFlight)
		m.LateSends += r.LateSends
		m.Unsent += r.Unsent
		m.Attempts += r.Attempts
		if r.Stopped != "" && !slices.Contains(stopped, r.Stopped) {
			stopped = append(stopped, r.Stopped)
		}
		addCounts(&m.Outcomes, r.Outcomes)
		addCounts(&m.Errors, r.Errors)
		if r.TCPExt == nil {
			missingKernel++
		}
		addCounts(&m.TCPExt, r.TCPExt)
		m.Notes = append(m.Notes, r.Notes...)
		for name, l := range r.Phases {
			h, err := l.Histogram()
			if err != nil {
				return nil, fmt.Errorf("merge: phase %q: %v", name, err)
			}
			pool(hists, name, h)
		}
	}
	m.Stopped = strings.Join(stopped, "; ")
	if missingKernel > 0 && m.TCPExt != nil {
		m.TCPExt = nil // a sum over some of the runs is not the pool's
		m.Notes = append(m.Notes, fmt.Sprintf("tcp_ext left out: %d of %d runs have none", missingKernel, len(rs)))
	}
	for name, h := range hists {
		m.Phases[name] = newLatency(h)
	}
	if s := m.Phases[PhaseSession]; s != nil {
		m.Latency = *s
		m.Latency.Hist = ""
	}
	for key, h := range faultHists {
		m.ClientFaults[key].Latency = *newLatency(h)
	}
	return m, nil
}

// sameClientFaults checks that b ran the client faults of a, with the same
// ratios: results of other faulty loads do not mix.
func sameClientFaults(a, b *Result) error {
	same := len(a.ClientFaults) == len(b.ClientFaults)
	for key, f := range a.ClientFaults {
		g := b.ClientFaults[key]
		same = same && g != nil && f != nil && g.Ratio == f.Ratio
	}
	if !same {
		return fmt.Errorf("merge: results of different loads do not mix (client faults %s against %s)", faultList(a), faultList(b))
	}
	return nil
}

// faultList lists a result's client faults with their ratios, sorted.
func faultList(r *Result) string {
	if len(r.ClientFaults) == 0 {
		return "none"
	}
	var l []string
	for _, key := range slices.Sorted(maps.Keys(r.ClientFaults)) {
		l = append(l, fmt.Sprintf("%s ×%g", key, r.ClientFaults[key].Ratio))
	}
	return strings.Join(l, ", ")
}

// mergeClientFaults adds r's client fault sections to m's, and their
// histograms to hists, by key, for Merge to summarise.
func (m *Result) mergeClientFaults(r *Result, hists map[string]*hdr.Histogram) error {
	for key, f := range r.ClientFaults {
		h, err := f.Latency.Histogram()
		if err != nil {
			return fmt.Errorf("merge: client fault %q: %v", key, err)
		}
		if m.ClientFaults == nil {
			m.ClientFaults = map[string]*FaultResult{}
		}
		g := m.ClientFaults[key]
		if g == nil {
			g = &FaultResult{Name: f.Name, Ratio: f.Ratio, Outcomes: map[string]int64{}}
			m.ClientFaults[key] = g
		}
		g.Sessions += f.Sessions
		addCounts(&g.Outcomes, f.Outcomes)
		addCounts(&g.Errors, f.Errors)
		pool(hists, key, h)
	}
	return nil
}

// pool adds h to hists[key], making it if need be.
func pool(hists map[string]*hdr.Histogram, key string, h *hdr.Histogram) {
	if hists[key] == nil {
		hists[key] = newHist(histDigits)
	}
	hists[key].Merge(h)
}

// addCounts adds src's counts into *dst, making the map if need be.
func addCounts[M ~map[string]int64](dst *M, src M) {
	for k, n := range src {
		if *dst == nil {
			*dst = make(M)
		}
		(*dst)[k] += n
	}
}
