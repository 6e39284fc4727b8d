package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/route"
)

// Scenario is one scenario file: a workload, its faults, the daemon
// settings to sweep, and what each cell is expected to show.
type Scenario struct {
	File        string // where it came from, for messages
	Text        []byte // the file as written, kept in the results
	Name        string
	Description string
	TimeScale   string // how the scenario's times map to SMSvcHost's, as stated

	// Base holds the daemon keys every cell shares, in file order.
	Base []Setting
	// Axes are the swept settings, in file order: the first varies
	// slowest.
	Axes []Axis

	Workers     []WorkerGroup
	Load        []Load
	Faults      []faults.Spec // daemon and network faults, timed from the run's epoch
	Netns       bool          // load in one network namespace, daemon and workers in another
	Repetitions int
	Drain       time.Duration // after the load, how long the daemon has to close every connection
	Assert      []Assertion
	// Compare holds the tolerances `portshare compare` applies to this
	// scenario's sweeps, by metric, over DefaultTolerances; nil when the
	// file has no compare section.
	Compare map[string]Tolerance
}

// Setting is one key and its value, canonical (durations as Go writes
// them, 1000ms as 1s), so that cells and where clauses compare as text.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Axis is one swept setting and the values it takes. A preset axis sets
// several keys at once per value: Presets[i] is what Values[i] names.
type Axis struct {
	Key     string
	Values  []string
	Presets [][]Setting
	Line    int
}

// WorkerGroup is Count identical reference workers registering the same
// routes under one name.
type WorkerGroup struct {
	Name        string
	Routes      []string // with {port} for the run's shared port
	Mode        string   // echo, http or https
	Count       int
	MaxInflight int
	Faults      []faults.Spec
	// Restart, if set, starts a worker that exited on its own (a crash)
	// again after this long, as a service manager would; the new process
	// runs the group's faults but crash.
	Restart time.Duration
}

// Load is one load generator process.
type Load struct {
	Target         string // with {port}; {host} unless Connect is given
	Connect        string // where to connect when the target names another host (its Via, Host or SNI): "{host}:{port}"
	Rate           float64
	Concurrency    int
	Arrival        string
	Duration       time.Duration
	Count          int64
	At             time.Duration // start this long after the run's epoch
	Messages       int
	MessageSize    int
	Method         string
	Timeout        time.Duration
	ConnectTimeout time.Duration
	Send           string        // tcp:// storms: bytes sent after connecting (Go escapes)
	SendDelay      time.Duration // tcp:// storms: wait before Send
	Hold           time.Duration // tcp:// storms: keep each connection open this long
	NewConnections bool          // http: a connection per session instead of keep-alive
	ClientFaults   []ClientFault
}

// ClientFault is a share of a load's sessions that misbehave.
type ClientFault struct {
	Spec  faults.Spec
	Ratio float64
}

// Assertion is a list of expectations that hold in the cells Where
// selects (every cell when Where is empty).
type Assertion struct {
	Where  []Where
	Expect []Expectation
	Line   int
}

// Where selects cells whose setting Key has one of Values.
type Where struct {
	Key    string
	Values []string
}

// An Error is a problem in a scenario file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Limits that keep a scenario finite.
const (
	maxCells       = 4096
	MaxRepetitions = 100 // runs of each cell
	maxWorkers     = 256 // processes per run
	maxLoads       = 16
	maxDrain       = 10 * time.Minute
	maxRunTime     = time.Hour // load duration plus start offset
)

// runnerKeys are the daemon keys the runner sets itself for every run.
var runnerKeys = map[string]string{
	"control_socket":   "each run gets a control socket of its own",
	"listen_addresses": "the runner listens on loopback (or the daemon's namespace)",
	"metrics_addr":     "the runner reads the daemon's metrics over the control socket",
}

var methodRE = regexp.MustCompile(`^[A-Z]{1,32}$`)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Parse reads a scenario file; file names it in errors. Parsing is strict:
// an unknown key, a value of the wrong type, a bad fault spec, a sweep
// value the daemon would refuse, or a cell whose settings contradict each
// other is an *Error with the line to fix.
func Parse(file string, data []byte) (*Scenario, error) {
	p := &parser{file: file}
	s, err := p.scenario(data)
	if err != nil {
		return nil, err
	}
	s.File, s.Text = file, bytes.Clone(data)
	return s, nil
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, format string, a ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) scenario(data []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// yaml's own "line N" stays in the message: for some errors it names
	// the line before the fault.
	badYAML := func(err error) error {
		return &Error{File: p.file, Msg: "bad YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: p.file, Msg: "empty scenario: give at least name, workers and load"}
		}
		return nil, badYAML(err)
	}
	if err := dec.Decode(&extra); err == nil {
		return nil, p.errf(&extra, "more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		return nil, badYAML(err)
	}
	root := doc.Content[0]
	s := &Scenario{Repetitions: 1, Drain: 10 * time.Second}
	var daemon, workers, load, assert *yaml.Node
	err := p.mapping(root, "scenario", map[string]func(*yaml.Node) error{
		"name": func(n *yaml.Node) (err error) {
			if s.Name, err = p.str(n); err == nil && !nameRE.MatchString(s.Name) {
				err = p.errf(n, "name %q: use lower-case letters, digits and dashes", s.Name)
			}
			return err
		},
		"description": func(n *yaml.Node) (err error) { s.Description, err = p.str(n); return },
		"time_scale":  func(n *yaml.Node) (err error) { s.TimeScale, err = p.str(n); return },
		"daemon":      func(n *yaml.Node) error { daemon = n; return nil },
		"workers":     func(n *yaml.Node) error { workers = n; return nil },
		"load":        func(n *yaml.Node) error { load = n; return nil },
		"faults": func(n *yaml.Node) (err error) {
			s.Faults, err = p.faultList(n, "daemon or network", faults.Daemon, faults.Network)
			return err
		},
		"netns": func(n *yaml.Node) (err error) { s.Netns, err = p.boolean(n); return },
		"repetitions": func(n *yaml.Node) (err error) {
			s.Repetitions, err = p.intRange(n, 1, MaxRepetitions)
			return err
		},
		"drain":   func(n *yaml.Node) (err error) { s.Drain, err = p.duration(n, 0, maxDrain); return },
		"assert":  func(n *yaml.Node) error { assert = n; return nil },
		"compare": func(n *yaml.Node) (err error) { s.Compare, err = p.compare(n); return err },
	}, "name", "workers", "load")
	if err != nil {
		return nil, err
	}
	if workers != nil {
		if err := p.workers(s, workers); err != nil {
			return nil, err
		}
	}
	if err := p.loads(s, load); err != nil {
		return nil, err
	}
	if daemon != nil {
		if err := p.daemon(s, daemon); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Faults {
		if f.Kind == faults.Network {
			s.Netns = true
		}
	}
	if assert != nil {
		if err := p.assertions(s, assert); err != nil {
			return nil, err
		}
	}
	if err := p.check(s, root); err != nil {
		return nil, err
	}
	return s, nil
}

// mapping walks a mapping node, calling the handler of each key; unknown
// and repeated keys are errors, and so are missing required ones.
func (p *parser) mapping(n *yaml.Node, what string, handlers map[string]func(*yaml.Node) error, required ...string) error {
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "%s: want a mapping of keys (%s)", what, strings.Join(slices.Sorted(maps.Keys(handlers)), ", "))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		h, ok := handlers[k.Value]
		if !ok {
			return p.errf(k, "%s: unknown key %q (known keys: %s)", what, k.Value, strings.Join(slices.Sorted(maps.Keys(handlers)), ", "))
		}
		if prev, dup := seen[k.Value]; dup {
			return p.errf(k, "%s: key %q given twice (first on line %d)", what, k.Value, prev)
		}
		seen[k.Value] = k.Line
		if err := h(v); err != nil {
			var e *Error
			if errors.As(err, &e) {
				return err
			}
			return p.errf(v, "%s: %v", k.Value, err)
		}
	}
	for _, r := range required {
		if _, ok := seen[r]; !ok {
			return p.errf(n, "%s: %q is required", what, r)
		}
	}
	return nil
}

func (p *parser) str(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fmt.Errorf("want a string, got %s", config.Describe(n))
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, fmt.Errorf("want true or false, got %s", config.Describe(n))
	}
	return n.Value == "true", nil
}

func (p *parser) intRange(n *yaml.Node, lo, hi int) (int, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return 0, fmt.Errorf("want an integer, got %s", config.Describe(n))
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("want an integer from %d to %d, got %s", lo, hi, n.Value)
	}
	return v, nil
}

func (p *parser) number(n *yaml.Node, lo, hi float64) (float64, error) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return 0, fmt.Errorf("want a number, got %s", config.Describe(n))
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || math.IsNaN(v) || v < lo || v > hi {
		return 0, fmt.Errorf("want a number from %g to %g, got %s", lo, hi, n.Value)
	}
	return v, nil
}

func (p *parser) duration(n *yaml.Node, lo, hi time.Duration) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("want a duration such as 8s or 250ms, got %s", config.Describe(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 8s or 250ms, got %q", n.Value)
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("want a duration from %s to %s, got %s", lo, hi, n.Value)
	}
	return d, nil
}

func (p *parser) strList(n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		s, err := p.str(n)
		return []string{s}, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of strings, got %s", config.Describe(n))
	}
	var out []string
	for _, e := range n.Content {
		s, err := p.str(e)
		if err != nil {
			return nil, p.errf(e, "%v", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) faultList(n *yaml.Node, what string, kinds ...faults.Kind) ([]faults.Spec, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of %s fault specs, got %s", what, config.Describe(n))
	}
	var out []faults.Spec
	for _, e := range n.Content {
		text, err := p.str(e)
		if err != nil {
			return nil, p.errf(e, "%v", err)
		}
		spec, err := parseFault(text, kinds...)
		if err != nil {
			return nil, p.errf(e, "%v", err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// faultPlace says where a scenario takes the faults of each kind.
var faultPlace = map[faults.Kind]string{
	faults.Worker:  "a worker group's faults",
	faults.Client:  "a load's client_faults",
	faults.Daemon:  "the scenario's faults",
	faults.Network: "the scenario's faults",
}

// parseFault parses a spec of one of kinds, choosing the kind by the
// fault's name: trying each kind in turn would report the last kind's
// "unknown name" in place of the real problem (a bad key, say).
func parseFault(text string, kinds ...faults.Kind) (faults.Spec, error) {
	name, _, _ := strings.Cut(strings.TrimSpace(text), ":")
	for _, k := range []faults.Kind{faults.Worker, faults.Client, faults.Daemon, faults.Network} {
		if !slices.Contains(faults.Names(k), name) {
			continue
		}
		if !slices.Contains(kinds, k) {
			return faults.Spec{}, fmt.Errorf("fault %q: %s is a %s fault: give it in %s", text, name, k, faultPlace[k])
		}
		return faults.Parse(k, text)
	}
	var known []string
	for _, k := range kinds {
		known = append(known, fmt.Sprintf("%s faults are %s", k, strings.Join(faults.Names(k), ", ")))
	}
	return faults.Spec{}, fmt.Errorf("fault %q: unknown name; %s", text, strings.Join(known, "; "))
}

func (p *parser) workers(s *Scenario, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return p.errf(n, "workers: want a list of worker groups, each {route, count, max_inflight, faults}")
	}
	names := map[string]int{}
	routes := map[string]string{} // route → the group registering it
	total := 0
	for i, e := range n.Content {
		g := WorkerGroup{Name: fmt.Sprintf("w%d", i+1), Count: 1, MaxInflight: 1}
		err := p.mapping(e, "worker group", map[string]func(*yaml.Node) error{
			"name": func(v *yaml.Node) (err error) {
				if g.Name, err = p.str(v); err == nil && !nameRE.MatchString(g.Name) {
					err = fmt.Errorf("%q: use lower-case letters, digits and dashes", g.Name)
				}
				return err
			},
			"route":  func(v *yaml.Node) (err error) { g.Routes, err = p.strList(v); return },
			"routes": func(v *yaml.Node) (err error) { g.Routes, err = p.strList(v); return },
			"mode": func(v *yaml.Node) (err error) {
				if g.Mode, err = p.str(v); err == nil && g.Mode != "echo" && g.Mode != "http" && g.Mode != "https" {
					err = fmt.Errorf("want echo, http or https, got %q", g.Mode)
				}
				return err
			},
			"count":        func(v *yaml.Node) (err error) { g.Count, err = p.intRange(v, 1, maxWorkers); return },
			"max_inflight": func(v *yaml.Node) (err error) { g.MaxInflight, err = p.intRange(v, 1, 1<<10); return },
			"faults": func(v *yaml.Node) (err error) {
				g.Faults, err = p.faultList(v, "worker", faults.Worker)
				return err
			},
			"restart": func(v *yaml.Node) (err error) { g.Restart, err = p.duration(v, time.Millisecond, maxRunTime); return },
		})
		if err != nil {
			return err
		}
		if len(g.Routes) == 0 {
			return p.errf(e, "worker group %s: give route: URI (or routes: [URI, …])", g.Name)
		}
		for _, r := range g.Routes {
			mode, err := checkRoute(r)
			if err != nil {
				return p.errf(e, "worker group %s: %v", g.Name, err)
			}
			if g.Mode == "" {
				g.Mode = mode
			} else if g.Mode != mode {
				return p.errf(e, "worker group %s: mode %s cannot serve route %q: the reference worker serves it with mode %s", g.Name, g.Mode, r, mode)
			}
			key := strings.ToLower(Expand(r, "127.0.0.1", 8808))
			if other, dup := routes[key]; dup && other != g.Name {
				return p.errf(e, "worker group %s: route %q is registered by group %s too: one service serves a route; give that group count: N for more processes", g.Name, r, other)
			}
			routes[key] = g.Name
		}
		if prev, dup := names[g.Name]; dup {
			return p.errf(e, "worker group name %q used twice (first on line %d)", g.Name, prev)
		}
		names[g.Name] = e.Line
		total += g.Count
		s.Workers = append(s.Workers, g)
	}
	if total > maxWorkers {
		return p.errf(n, "workers: %d worker processes in all, at most %d", total, maxWorkers)
	}
	return nil
}

// checkRoute checks a route with {port} for the shared port, and returns
// the reference worker mode that serves its scheme.
func checkRoute(r string) (string, error) {
	// {port} must be the port itself: "+:1{port}" or "+:8808/{port}/"
	// would parse, and then listen where the load never goes.
	notPort := fmt.Errorf("route %q: write the port as {port}: each run gets a free one", r)
	if !strings.Contains(r, ":{port}") {
		return "", notPort
	}
	u, err := route.Parse(strings.ReplaceAll(r, "{port}", "8808"))
	if err != nil {
		return "", err
	}
	if u.Port != 8808 {
		return "", notPort
	}
	switch u.Scheme {
	case "http":
		return "http", nil
	case "tls":
		return "https", nil
	}
	return "echo", nil
}

func (p *parser) loads(s *Scenario, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 || len(n.Content) > maxLoads {
		return p.errf(n, "load: want a list of 1 to %d load generators, each {target, rate or concurrency, duration or count}", maxLoads)
	}
	for _, e := range n.Content {
		l := Load{Messages: 1, Arrival: "constant", Timeout: 10 * time.Second, ConnectTimeout: 3 * time.Second}
		var rate, conc, dur, count bool
		err := p.mapping(e, "load", map[string]func(*yaml.Node) error{
			"target": func(v *yaml.Node) (err error) { l.Target, err = p.str(v); return },
			"rate": func(v *yaml.Node) (err error) {
				rate = true
				l.Rate, err = p.number(v, 0.001, 1e6)
				return err
			},
			"concurrency": func(v *yaml.Node) (err error) {
				conc = true
				l.Concurrency, err = p.intRange(v, 1, 1<<16)
				return err
			},
			"arrival": func(v *yaml.Node) (err error) {
				if l.Arrival, err = p.str(v); err == nil && l.Arrival != "constant" && l.Arrival != "poisson" {
					err = fmt.Errorf("want constant or poisson, got %q", l.Arrival)
				}
				return err
			},
			"duration": func(v *yaml.Node) (err error) {
				dur = true
				l.Duration, err = p.duration(v, time.Millisecond, maxRunTime)
				return err
			},
			"count": func(v *yaml.Node) error {
				count = true
				c, err := p.intRange(v, 1, 1<<30)
				l.Count = int64(c)
				return err
			},
			"at":           func(v *yaml.Node) (err error) { l.At, err = p.duration(v, 0, maxRunTime); return },
			"messages":     func(v *yaml.Node) (err error) { l.Messages, err = p.intRange(v, 0, 1<<16); return },
			"message_size": func(v *yaml.Node) (err error) { l.MessageSize, err = p.intRange(v, 0, 1<<24); return },
			"method": func(v *yaml.Node) (err error) {
				if l.Method, err = p.str(v); err == nil && !methodRE.MatchString(l.Method) {
					err = fmt.Errorf("%q is not an HTTP method, such as GET or POST", l.Method)
				}
				return err
			},
			"timeout": func(v *yaml.Node) (err error) { l.Timeout, err = p.duration(v, time.Millisecond, maxRunTime); return },
			"connect_timeout": func(v *yaml.Node) (err error) {
				l.ConnectTimeout, err = p.duration(v, time.Millisecond, maxRunTime)
				return
			},
			"client_faults": func(v *yaml.Node) (err error) {
				l.ClientFaults, err = p.clientFaults(v)
				return err
			},
			"send": func(v *yaml.Node) (err error) {
				if l.Send, err = p.str(v); err == nil {
					if _, uerr := strconv.Unquote(`"` + l.Send + `"`); uerr != nil {
						err = fmt.Errorf("%q: use Go string escapes (\\x00, \\r\\n)", l.Send)
					}
				}
				return err
			},
			"connect": func(v *yaml.Node) (err error) { l.Connect, err = p.str(v); return },
			"new_connections": func(v *yaml.Node) (err error) {
				l.NewConnections, err = p.boolean(v)
				return err
			},
			"send_delay": func(v *yaml.Node) (err error) { l.SendDelay, err = p.duration(v, 0, maxRunTime); return },
			"hold":       func(v *yaml.Node) (err error) { l.Hold, err = p.duration(v, 0, maxRunTime); return },
		}, "target")
		if err != nil {
			return err
		}
		switch {
		case rate == conc:
			return p.errf(e, "load: give one of rate (open model, sessions/s) and concurrency (closed model)")
		case dur == count:
			return p.errf(e, "load: give one of duration and count: a run must stop by itself")
		case l.At+l.Duration > maxRunTime:
			return p.errf(e, "load: at + duration is over %s", maxRunTime)
		case conc && l.Arrival != "constant":
			return p.errf(e, "load: arrival shapes the open model: use it with rate")
		}
		// As for routes, {port} must be the port: "{host}{port}" parses
		// as a host and the scheme's default port.
		notPort := p.errf(e, "load: target %q: write the port as {port} (and the host as {host}): each run gets its own", l.Target)
		if !strings.Contains(l.Target, ":{port}") {
			return notPort
		}
		t, err := loadgen.ParseTarget(Expand(l.Target, "127.0.0.1", 8808))
		if err != nil {
			return p.errf(e, "load: %v", err)
		}
		if _, port, _ := net.SplitHostPort(t.Addr); port != "8808" {
			return notPort
		}
		// The load must reach the daemon: at {host}, unless the target
		// names another host on purpose and connect says where to go.
		switch {
		case l.Connect != "" && Expand(l.Connect, "127.0.0.1", 8808) != "127.0.0.1:8808":
			return p.errf(e, "load: connect %q: want \"{host}:{port}\", where the run's daemon listens", l.Connect)
		case l.Connect != "" && conc && t.Protocol == loadgen.HTTP:
			return p.errf(e, "load: connect needs the open model (rate) for http targets")
		case l.Connect == "" && t.Addr != "127.0.0.1:8808":
			return p.errf(e, "load: target %q: write the host as {host}, or keep the host (for its Via, Host header or TLS server name) and add connect: \"{host}:{port}\"", l.Target)
		}
		if t.Protocol != loadgen.HTTP && l.NewConnections {
			return p.errf(e, "load: new_connections is for http and https targets: net.tcp sessions and storms always connect anew")
		}
		if t.Protocol != loadgen.TCP && (l.Send != "" || l.SendDelay > 0 || l.Hold > 0) {
			return p.errf(e, "load: send, send_delay and hold are for tcp:// connection storms")
		}
		if len(l.ClientFaults) > 0 && conc && t.Protocol == loadgen.HTTP {
			return p.errf(e, "load: client faults need the open model (rate) for http targets")
		}
		s.Load = append(s.Load, l)
	}
	return nil
}

// Expand fills {host} and {port} in a route or target.
func Expand(s, host string, port int) string {
	return strings.NewReplacer("{host}", host, "{port}", strconv.Itoa(port)).Replace(s)
}

func (p *parser) clientFaults(n *yaml.Node) ([]ClientFault, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of {spec, ratio}, got %s", config.Describe(n))
	}
	var out []ClientFault
	sum := 0.0
	for _, e := range n.Content {
		cf := ClientFault{Ratio: 1}
		if e.Kind == yaml.ScalarNode { // a bare spec takes every session
			spec, err := parseFault(e.Value, faults.Client)
			if err != nil {
				return nil, p.errf(e, "%v", err)
			}
			cf.Spec = spec
		} else {
			err := p.mapping(e, "client fault", map[string]func(*yaml.Node) error{
				"spec": func(v *yaml.Node) error {
					text, err := p.str(v)
					if err == nil {
						cf.Spec, err = parseFault(text, faults.Client)
					}
					return err
				},
				"ratio": func(v *yaml.Node) (err error) {
					if v.Tag == "!!str" {
						cf.Ratio, err = faults.ParseShare(v.Value)
					} else {
						cf.Ratio, err = p.number(v, 0, 1)
					}
					if err == nil && cf.Ratio == 0 {
						err = errors.New("want a share above 0 and at most 1, such as 0.05 or 5%")
					}
					return err
				},
			}, "spec")
			if err != nil {
				return nil, err
			}
		}
		sum += cf.Ratio
		out = append(out, cf)
	}
	if sum > 1+1e-9 {
		return nil, p.errf(n, "client_faults: the ratios add up to %g, above 1", sum)
	}
	return out, nil
}

// compare reads the compare section: a mapping of metric to tolerance.
func (p *parser) compare(n *yaml.Node) (map[string]Tolerance, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "compare: want a mapping of metric to tolerance (%s), got %s", ToleranceForms, config.Describe(n))
	}
	out := map[string]Tolerance{}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if prev, dup := lines[k.Value]; dup {
			return nil, p.errf(k, "compare: metric %q given twice (first on line %d)", k.Value, prev)
		}
		lines[k.Value] = k.Line
		if !IsMetric(k.Value) {
			return nil, p.errf(k, "compare: unknown metric %q (known: %s)", k.Value, strings.Join(metricList(), ", "))
		}
		// A scalar of any type: "+0.05" is a YAML number, "x2" a string;
		// the text as written is what counts.
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, p.errf(v, "compare: %s: want a tolerance (%s), got %s", k.Value, ToleranceForms, config.Describe(v))
		}
		t, err := ParseMetricTolerance(k.Value, v.Value)
		if err != nil {
			return nil, p.errf(v, "compare: %v", err)
		}
		out[k.Value] = t
	}
	return out, nil
}

func (p *parser) assertions(s *Scenario, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, "assert: want a list of {where, expect}")
	}
	for _, e := range n.Content {
		a := Assertion{Line: e.Line}
		err := p.mapping(e, "assert", map[string]func(*yaml.Node) error{
			"where": func(v *yaml.Node) error {
				return p.mapping(v, "where", p.whereHandlers(s, &a))
			},
			"expect": func(v *yaml.Node) error {
				texts, err := p.strList(v)
				if err != nil {
					return err
				}
				for i, t := range texts {
					x, err := ParseExpectation(t)
					if err != nil {
						line := v
						if v.Kind == yaml.SequenceNode {
							line = v.Content[i]
						}
						return p.errf(line, "expect: %v", err)
					}
					a.Expect = append(a.Expect, x)
				}
				return nil
			},
		}, "expect")
		if err != nil {
			return err
		}
		s.Assert = append(s.Assert, a)
	}
	return nil
}

// whereHandlers accepts every key a cell has a value for: the settable
// keys (a cell the scenario leaves alone has the default) and the preset
// axes (by preset name).
func (p *parser) whereHandlers(s *Scenario, a *Assertion) map[string]func(*yaml.Node) error {
	h := map[string]func(*yaml.Node) error{}
	add := func(key string, check func(*yaml.Node) (string, error)) {
		h[key] = func(v *yaml.Node) error {
			raw := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				raw = v.Content
			}
			w := Where{Key: key}
			if len(raw) == 0 {
				return p.errf(v, "where: %s: give a value or a list of values", key)
			}
			for _, r := range raw {
				val, err := check(r)
				if err != nil {
					return p.errf(r, "where: %s: %v", key, err)
				}
				w.Values = append(w.Values, val)
			}
			a.Where = append(a.Where, w)
			return nil
		}
	}
	for _, key := range s.settableKeys() {
		add(key, func(n *yaml.Node) (string, error) { return canonical(key, n) })
	}
	for _, ax := range s.Axes {
		if ax.Presets == nil {
			continue
		}
		add(ax.Key, func(n *yaml.Node) (string, error) {
			if n.Kind != yaml.ScalarNode || !slices.Contains(ax.Values, n.Value) {
				return "", fmt.Errorf("want one of the presets %s, got %s", strings.Join(ax.Values, ", "), config.Describe(n))
			}
			return n.Value, nil
		})
	}
	return h
}
