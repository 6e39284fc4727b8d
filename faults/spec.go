package faults

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is who a fault acts on, and so who applies it.
type Kind string

const (
	Worker  Kind = "worker"  // portshare worker --fault
	Client  Kind = "client"  // portshare load --client-fault
	Daemon  Kind = "daemon"  // whoever runs the daemon (the scenario runner)
	Network Kind = "network" // root only: network namespaces and netem
)

// A Spec is one parsed fault: NAME or NAME:key=value,key=value (SPEC §7).
// Keys common to every fault:
//
//	at=D    start this long after the schedule's start (default 0)
//	for=D   stay in effect this long (default: to the end)
//
// Keys of some faults: p= (probability per connection, 0..1), seed=N,
// delay=D with dist=fixed|uniform|exp|pareto and max=D (see Delay), and
// each fault's own (see Catalogue).
type Spec struct {
	Name string
	Kind Kind
	At   time.Duration
	For  time.Duration // 0: until the end
	P    float64       // probability per connection; 1 when not given
	Seed uint64

	text   string
	values map[string]string // the fault's own keys, checked by Parse
}

// String returns the spec as it was written.
func (s Spec) String() string { return s.text }

// key is one key a fault accepts.
type key struct {
	name, kind, help string // kind: duration, prob, int, seed, float, percent, enum:a|b
}

// fault is one entry of the catalogue.
type fault struct {
	kind Kind
	help string
	keys []key
}

// Keys shared by the faults that draw a delay.
var delayKeys = []key{
	{"delay", "duration", "mean delay"},
	{"dist", "enum:fixed|uniform|exp|pareto", "distribution of the delay (default fixed)"},
	{"max", "duration", "cap on one delay (default 20 x delay for exp and pareto)"},
	{"shape", "float", "pareto shape alpha > 1 (default 1.5)"},
}

var (
	keyAt   = key{"at", "duration", "start after the schedule's start"}
	keyFor  = key{"for", "duration", "how long it stays in effect (default: to the end)"}
	keyP    = key{"p", "prob", "probability per connection, 0..1"}
	keySeed = key{"seed", "seed", "random seed, for repeatable runs"}
)

// catalogue is every fault there is, by name (SPEC §7).
var catalogue = map[string]fault{
	// Worker faults wrap the worker's listener or its connections.
	"slow-accept": {Worker, "delay before each Accept (a thread-pool-starved service)", append([]key{keyAt, keyFor, keyP, keySeed}, delayKeys...)},
	"stall":       {Worker, "stop accepting for the window at..at+for", []key{keyAt, keyFor}},
	"hang":        {Worker, "stop accepting for good from at", []key{keyAt}},
	"crash": {Worker, "SIGKILL the worker at at, or after N accepted connections", []key{keyAt,
		{"after", "int", "crash after this many accepted connections"},
		{"inflight", "duration", "stop accepting this long before the kill, so hand-offs are in flight"}}},
	"slow-message": {Worker, "delay before each reply is written", append([]key{keyAt, keyFor, keyP, keySeed}, delayKeys...)},
	"refuse":       {Worker, "close each connection at once", []key{keyAt, keyFor, keyP, keySeed}},

	// Client faults replace a share of the load's sessions
	// (--client-fault-ratio).
	"silent":  {Client, "connect and send nothing", []key{keyAt, keyFor}},
	"dribble": {Client, "send the opening one byte per interval", []key{keyAt, keyFor, {"interval", "duration", "time between bytes (default 100ms)"}}},
	"garbage": {Client, "send random bytes instead of a preamble or request", []key{keyAt, keyFor, keySeed, {"bytes", "int", "how many (default 64)"}}},
	"oversize-via": {Client, "a Via (net.tcp) or request head (http) longer than the daemon accepts", []key{keyAt, keyFor,
		{"len", "int", "net.tcp: length of the Via (default 4096; the limit is 2048); http: of the request head (default 65536, above any max_http_head)"}}},
	"unknown-route": {Client, "a Via or Host+path no worker registered", []key{keyAt, keyFor}},
	"rst": {Client, "reset the connection (SO_LINGER 0)", []key{keyAt, keyFor,
		{"when", "enum:connect|preamble|ack", "after connect, mid-preamble, or after the ack or response (default connect)"}}},
	"connect-close": {Client, "connect and close at once, as a health check does", []key{keyAt, keyFor}},

	// Daemon faults act on the daemon's process.
	"pause":   {Daemon, "SIGSTOP the daemon at at, SIGCONT after for (default 1s)", []key{keyAt, keyFor}},
	"restart": {Daemon, "stop the daemon at at and start it again after for (default 0)", []key{keyAt, keyFor}},
	"nofile": {Daemon, "lower the daemon's RLIMIT_NOFILE (prlimit) at at, restore after for", []key{keyAt, keyFor,
		{"limit", "int", "the new soft limit (default: descriptors open now + 8)"}}},

	// The network fault shapes a veth pair between namespaces.
	"netem": {Network, "tc netem on the link between the client and daemon namespaces", []key{keyAt, keyFor,
		{"delay", "duration", "delay of packets leaving the daemon's namespace: each round trip grows by it"},
		{"jitter", "duration", "delay variation"},
		{"loss", "percent", "packet loss, e.g. 1%"},
		{"reorder", "percent", "share of packets sent at once, out of order (needs delay)"}}},
}

// Names returns the names of the faults of kind k, sorted.
func Names(k Kind) []string {
	var names []string
	for n, f := range catalogue {
		if f.kind == k {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Help describes every fault of kind k and its keys, one fault a line, for
// --help texts and error messages.
func Help(k Kind) string {
	var b strings.Builder
	for _, n := range Names(k) {
		f := catalogue[n]
		fmt.Fprintf(&b, "  %s: %s; keys: %s\n", n, f.help, keyNames(f.keys))
	}
	return b.String()
}

func keyNames(keys []key) string {
	var s []string
	for _, k := range keys {
		s = append(s, k.name)
	}
	return strings.Join(s, ", ")
}

// Parse parses one spec of kind k. A name of another kind, an unknown key
// or a bad value is an error that lists the valid names or keys.
func Parse(k Kind, text string) (Spec, error) {
	name, args, _ := strings.Cut(strings.TrimSpace(text), ":")
	f, ok := catalogue[name]
	if !ok || f.kind != k {
		return Spec{}, fmt.Errorf("%s fault %q: unknown name; %s faults are %s", k, name, k, strings.Join(Names(k), ", "))
	}
	s := Spec{Name: name, Kind: k, P: 1, Seed: 1, text: strings.TrimSpace(text), values: map[string]string{}}
	if args == "" {
		return s, s.check()
	}
	for kv := range strings.SplitSeq(args, ",") {
		kn, v, ok := strings.Cut(kv, "=")
		kn, v = strings.TrimSpace(kn), strings.TrimSpace(v)
		i := slices.IndexFunc(f.keys, func(x key) bool { return x.name == kn })
		if !ok || i < 0 {
			return Spec{}, fmt.Errorf("fault %q: %q is not key=value with a known key; the keys of %s are %s", text, kv, name, keyNames(f.keys))
		}
		if _, dup := s.values[kn]; dup {
			return Spec{}, fmt.Errorf("fault %q: key %s given twice", text, kn)
		}
		if err := checkValue(f.keys[i], v); err != nil {
			return Spec{}, fmt.Errorf("fault %q: bad %s: %v", text, kn, err)
		}
		s.values[kn] = v
	}
	s.At, s.For = s.Duration("at", 0), s.Duration("for", 0)
	if v, ok := s.values["p"]; ok {
		s.P, _ = strconv.ParseFloat(v, 64)
	}
	if v, ok := s.values["seed"]; ok {
		s.Seed, _ = strconv.ParseUint(v, 10, 64)
	}
	return s, s.check()
}

// WithSeed returns s drawing from seed, when its fault draws at random
// and its text gives no seed= of its own; otherwise s unchanged. Whoever
// starts several processes with one spec (the scenario runner's worker
// groups, its repetitions) gives each its own draws this way, still
// repeatable.
func (s Spec) WithSeed(seed uint64) Spec {
	if s.Has("seed") || !slices.ContainsFunc(catalogue[s.Name].keys, func(k key) bool { return k.name == "seed" }) {
		return s
	}
	sep := ","
	if !strings.Contains(s.text, ":") {
		sep = ":"
	}
	out, err := Parse(s.Kind, strings.TrimSpace(s.text)+sep+"seed="+strconv.FormatUint(seed, 10))
	if err != nil {
		return s
	}
	return out
}

// MustParse is Parse for specs known to be good (tests, defaults).
func MustParse(k Kind, text string) Spec {
	s, err := Parse(k, text)
	if err != nil {
		panic(err)
	}
	return s
}

// ParseAll parses specs of kind k, failing on the first bad one.
func ParseAll(k Kind, texts []string) ([]Spec, error) {
	specs := make([]Spec, 0, len(texts))
	for _, t := range texts {
		s, err := Parse(k, t)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// Bounds of every duration and whole-number key: at+for cannot overflow,
// and no count or size can ask for unbounded memory.
const (
	maxDuration = 1000 * time.Hour
	maxInt      = 1 << 20
)

func checkValue(k key, v string) error {
	switch kind, alts, _ := strings.Cut(k.kind, ":"); kind {
	case "duration":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxDuration {
			return fmt.Errorf("want a duration such as 250ms or 2s, at most %v", maxDuration)
		}
	case "prob":
		p, err := strconv.ParseFloat(v, 64)
		if err != nil || p < 0 || p > 1 || math.IsNaN(p) {
			return fmt.Errorf("want a probability from 0 to 1")
		}
	case "percent":
		if _, err := ParseShare(v); err != nil {
			return err
		}
	case "int":
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 || n > maxInt {
			return fmt.Errorf("want a whole number up to %d", maxInt)
		}
	case "seed":
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("want a whole number")
		}
	case "float":
		if f, err := strconv.ParseFloat(v, 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a number")
		}
	case "enum":
		if !slices.Contains(strings.Split(alts, "|"), v) {
			return fmt.Errorf("want one of %s", strings.ReplaceAll(alts, "|", ", "))
		}
	}
	return nil
}

// ParseShare reads a share of a whole written as a fraction (0.05) or a
// percentage (5%): the one syntax of fault probabilities, ratios and
// netem percentages. It is refused outside 0..1.
func ParseShare(v string) (float64, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(v), "%")
	f, err := strconv.ParseFloat(num, 64)
	if pct {
		f /= 100
	}
	if err != nil || !(f >= 0 && f <= 1) {
		return 0, fmt.Errorf("want a share from 0 to 1, such as 0.05 or 5%%")
	}
	return f, nil
}

// check holds what single keys cannot: combinations and required keys.
func (s Spec) check() error {
	need := func(k, why string) error {
		if _, ok := s.values[k]; !ok {
			return fmt.Errorf("fault %q: give %s=… (%s)", s.text, k, why)
		}
		return nil
	}
	switch s.Name {
	case "slow-accept", "slow-message":
		if err := need("delay", "the mean delay, e.g. delay=200ms"); err != nil {
			return err
		}
		if s.Float("shape", 1.5) <= 1 {
			return fmt.Errorf("fault %q: shape must be above 1 (the mean of a Pareto delay is infinite otherwise)", s.text)
		}
	case "stall":
		if s.For <= 0 {
			return fmt.Errorf("fault %q: give for=… above 0 (how long the worker stops accepting, e.g. for=3s; hang stops it for good)", s.text)
		}
	case "crash":
		if s.Has("after") && s.Int("after", 0) < 1 {
			return fmt.Errorf("fault %q: after= counts accepted connections and must be at least 1", s.text)
		}
		if s.Has("after") && s.Has("at") {
			return fmt.Errorf("fault %q: give at= (a time) or after= (a count), not both", s.text)
		}
	case "oversize-via":
		if s.Has("len") && s.Int("len", 0) <= 2048 {
			return fmt.Errorf("fault %q: len= must be above 2048, the longest Via MC-NMF allows", s.text)
		}
	case "netem":
		if !s.Has("delay") && !s.Has("loss") {
			return fmt.Errorf("fault %q: give delay=… and/or loss=…", s.text)
		}
		if (s.Has("jitter") || s.Has("reorder")) && !s.Has("delay") {
			return fmt.Errorf("fault %q: jitter and reorder need delay=…", s.text)
		}
	}
	return nil
}

// Has reports whether key k was given.
func (s Spec) Has(k string) bool { _, ok := s.values[k]; return ok }

// Duration returns key k as a duration, or def if not given.
func (s Spec) Duration(k string, def time.Duration) time.Duration {
	if v, ok := s.values[k]; ok {
		d, _ := time.ParseDuration(v)
		return d
	}
	return def
}

// Int returns key k as an integer, or def if not given.
func (s Spec) Int(k string, def int) int {
	if v, ok := s.values[k]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		return int(n)
	}
	return def
}

// Float returns key k as a number, or def if not given.
func (s Spec) Float(k string, def float64) float64 {
	if v, ok := s.values[k]; ok {
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return def
}

// Percent returns key k (written 1% or 0.01) as a percentage, or def if
// not given.
func (s Spec) Percent(k string, def float64) float64 {
	if v, ok := s.values[k]; ok {
		if num, pct := strings.CutSuffix(v, "%"); pct {
			f, _ := strconv.ParseFloat(num, 64) // as written: 7% stays 7, not 7.000000000000001
			return f
		}
		f, _ := ParseShare(v)
		return f * 100
	}
	return def
}

// Str returns key k as written, or def if not given.
func (s Spec) Str(k, def string) string {
	if v, ok := s.values[k]; ok {
		return v
	}
	return def
}

// Active reports whether the fault is in effect at elapsed time since the
// schedule's start: in [At, At+For), or from At on when For is 0.
func (s Spec) Active(elapsed time.Duration) bool {
	return elapsed >= s.At && (s.For == 0 || elapsed < s.At+s.For)
}

// End is when the fault stops being in effect, relative to the start; ok
// is false for a fault that lasts to the end.
func (s Spec) End() (end time.Duration, ok bool) {
	if s.For == 0 {
		return 0, false
	}
	return s.At + s.For, true
}
