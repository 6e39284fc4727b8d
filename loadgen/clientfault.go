package loadgen

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/nmf"
)

// ClientFault is a misbehaving client (SPEC §7) that takes the place of a
// share of a run's sessions: the load's other clients go on as normal, so a
// run measures what the misbehaving ones do to them.
//
// What a faulty session does, by the spec's name (its keys in brackets; the
// opening is the net.tcp preamble with the target as Via, or the HTTP
// request):
//
//	silent         connect, send nothing, read until the server closes or
//	               resets the connection or Options.Timeout passes
//	dribble        send the opening one byte per interval= (default 100ms),
//	               then go on as a normal session
//	garbage        send bytes= (default 64) random bytes, from seed= and the
//	               session's number, instead of the opening, then read the
//	               reply as silent does
//	oversize-via   net.tcp: a Via of len= bytes (default 4096; MC-NMF's limit
//	               is 2048), the target's URL with a path segment of padding;
//	               http: a request head of len= bytes (default 64 KiB, above
//	               the largest max_http_head), the padding in the request path
//	unknown-route  a Via, or a request path, at the root of the target's
//	               host:port that no worker registers: /portshare-unknown-route/
//	rst            close with SO_LINGER 0 (RST) when= connect (at once),
//	               preamble (after half the opening), or ack (after the
//	               PreambleAck or the response head)
//	connect-close  connect and close at once (FIN), as a health check does
//
// The session's outcome is what the server did: silent and garbage end in
// the class of the reply (fault:NAME for an MC-NMF fault record, http:CODE
// for a status, protocol_error for other bytes) or of the connection's end
// (eof, reset, timeout); dribble, oversize-via and unknown-route in the
// class a normal session would have; rst and connect-close are ok when the
// session got as far as its misbehaviour (connected; for rst, sent half the
// opening or read the acknowledgement), and otherwise the class of what
// stopped it.
//
// Faulty sessions always open connections of their own (a kept-alive HTTP
// connection already belongs to a worker, whatever its next request says).
// Their measurements go to Result.ClientFaults, never to the normal
// sessions' outcomes, latencies or series.
type ClientFault struct {
	// Spec is a parsed faults.Client spec. Its at= and for= place the fault
	// in the run, from the run's start, by each session's intended start.
	Spec faults.Spec
	// Ratio is the share of the sessions, while the fault is in effect,
	// that are this faulty client: 0 < Ratio <= 1, and the ratios of a
	// run's faults in effect at the same time add up to at most 1. It is
	// kept to nine decimals.
	Ratio float64
}

// Key names the fault in Result.ClientFaults: the spec as written.
func (f ClientFault) Key() string { return cmp.Or(f.Spec.String(), f.Spec.Name) }

// Client fault limits: ratios are kept as integers of ratioUnit (exact
// spreading without rounding drift), and what a faulty session sends is
// bounded so that a typo cannot make one session send gigabytes.
const (
	ratioUnit       = 1_000_000_000
	maxGarbageBytes = 1 << 20
	maxOversizeLen  = 1 << 20
	// defaultHTTPOversize is above the largest max_http_head the daemon
	// accepts (48 KiB), so that the default is refused whatever its
	// configuration; MC-NMF's Via limit is fixed at 2048 bytes.
	defaultHTTPOversize = 64 << 10
	defaultNetOversize  = 4096
	unknownRoutePath    = "/portshare-unknown-route/"
)

// ratioUnits is r in units of 1/ratioUnit, rounded.
func ratioUnits(r float64) uint64 { return uint64(math.Round(r * ratioUnit)) }

// checkClientFaults validates o.ClientFaults (Options.defaults calls it).
func (o *Options) checkClientFaults() error {
	if len(o.ClientFaults) == 0 {
		return nil
	}
	if o.Target.Protocol == HTTP && o.Pacer == nil {
		return optionsErrorf("client faults need the open model (--rate) for http targets: closed-model HTTP runs on hey's requester, which sends only normal requests")
	}
	seen := map[string]bool{}
	for _, f := range o.ClientFaults {
		key := f.Key()
		if f.Spec.Kind != faults.Client {
			return optionsErrorf("%q is not a client fault; client faults are %s", key, strings.Join(faults.Names(faults.Client), ", "))
		}
		if seen[key] {
			return optionsErrorf("client fault %q is given twice", key)
		}
		seen[key] = true
		if !(f.Ratio > 0 && f.Ratio <= 1) {
			return optionsErrorf("client fault %q: the ratio must be above 0 and at most 1, got %g", key, f.Ratio)
		}
		if ratioUnits(f.Ratio) == 0 {
			return optionsErrorf("client fault %q: ratio %g is below the smallest share, 1e-9", key, f.Ratio)
		}
		if err := f.check(o.Target); err != nil {
			return err
		}
	}
	// The faults in effect at once share the sessions. The sum of their
	// ratios changes only where a window opens or closes, so its largest
	// value is where one opens.
	for _, f := range o.ClientFaults {
		var sum uint64
		for _, g := range o.ClientFaults {
			if g.Spec.Active(f.Spec.At) {
				sum += ratioUnits(g.Ratio)
			}
		}
		if sum > ratioUnit {
			return optionsErrorf("the ratios of the client faults in effect at %s add up to %g: they are shares of the same sessions, at most 1 together", f.Spec.At, float64(sum)/ratioUnit)
		}
	}
	return nil
}

// check refuses a fault that makes no sense against target t, or whose
// keys are out of bounds.
func (f ClientFault) check(t Target) error {
	key, s := f.Key(), f.Spec
	// Raw faults need nothing of the protocol: they act on the connection.
	raw := s.Name == "silent" || s.Name == "connect-close" || s.Name == "garbage" || s.Name == "rst" && s.Str("when", "connect") == "connect"
	switch {
	case t.Protocol == TCP && (!raw || s.Name == "garbage"):
		return optionsErrorf("client fault %q: a tcp:// storm sends raw bytes already; its client faults are silent, connect-close and rst (when=connect)", key)
	case t.TLS && !raw:
		return optionsErrorf("client fault %q needs a request in clear: on https:// targets the client faults are silent, garbage, connect-close and rst (when=connect)", key)
	case s.Name == "garbage" && (s.Int("bytes", 64) < 1 || s.Int("bytes", 64) > maxGarbageBytes):
		return optionsErrorf("client fault %q: bytes must be from 1 to %d", key, maxGarbageBytes)
	case s.Name == "oversize-via" && s.Int("len", 0) > maxOversizeLen:
		return optionsErrorf("client fault %q: len is limited to %d", key, maxOversizeLen)
	}
	return nil
}

// faultClient is one client fault of a run, ready to run sessions.
type faultClient struct {
	ClientFault
	key      string
	units    uint64 // Ratio in units of 1/ratioUnit
	protocol string
	addr     string
	dialer   net.Dialer
	timeout  time.Duration
	opening  []byte         // the preamble or request this fault sends, dribbles or cuts
	nt       *netTCPSession // net.tcp: the normal session a faulty one goes on as once its opening is through
	req      *http.Request  // http: what reading a response needs to know (the method)
	garbage  int            // garbage: bytes per session
	when     string         // rst: how far a session gets before it resets
	interval time.Duration  // dribble
}

func newFaultClient(o Options, f ClientFault) *faultClient {
	c := &faultClient{
		ClientFault: f, key: f.Key(), units: ratioUnits(f.Ratio),
		protocol: o.Target.Protocol, addr: o.Target.Addr, dialer: net.Dialer{Timeout: o.ConnectTimeout}, timeout: o.Timeout,
		req: &http.Request{Method: o.Method}, garbage: f.Spec.Int("bytes", 64), when: f.Spec.Str("when", "connect"),
		interval: f.Spec.Duration("interval", 100*time.Millisecond),
	}
	if o.Target.TLS || o.Target.Protocol == TCP {
		return c // raw faults only (check): no opening
	}
	u, _ := url.Parse(o.Target.URL) // ParseTarget made it
	switch o.Target.Protocol {
	case NetTCP:
		c.nt = newNetTCPSession(o)
		c.opening = c.nt.preamble
		via := ""
		switch f.Spec.Name {
		case "oversize-via":
			via = padPath(u, f.Spec.Int("len", defaultNetOversize)-len(o.Target.URL)).String()
		case "unknown-route":
			via = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: unknownRoutePath}).String()
		}
		if via != "" {
			c.opening = nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: via, Encoding: nmf.EncodingBinarySession})
		}
	case HTTP:
		target := u.RequestURI()
		if f.Spec.Name == "unknown-route" {
			target = unknownRoutePath
		}
		c.opening = httpRequest(o, target)
		if f.Spec.Name == "oversize-via" {
			// Pad the request target, which follows the method and a
			// space, by what the head lacks of len=.
			padded := padPath(u, f.Spec.Int("len", defaultHTTPOversize)-len(httpHead(c.opening))).RequestURI()
			at := len(o.Method) + 1
			c.opening = slices.Concat(c.opening[:at], []byte(padded), c.opening[at+len(target):])
		}
	}
	return c
}

// padPath returns u with a last path segment of n bytes of padding added
// (a new segment, so that the padded path still matches u's route), or u
// itself when n <= 1.
func padPath(u *url.URL, n int) *url.URL {
	if n <= 1 {
		return u
	}
	p := *u
	if !strings.HasSuffix(p.Path, "/") {
		p.Path += "/"
		n--
	}
	p.RawPath = ""
	p.Path += strings.Repeat("x", n)
	return &p
}

// httpHead is the head of an HTTP request (up to its blank line).
func httpHead(req []byte) []byte {
	if i := strings.Index(string(req), "\r\n\r\n"); i >= 0 {
		return req[:i+4]
	}
	return req
}

// run runs the n-th faulty session (n seeds garbage). Options.Timeout
// bounds it from the connect on, as it bounds a normal session.
func (f *faultClient) run(ctx context.Context, ph *Phases, n int64) (string, error) {
	c, done, err := open(ctx, &f.dialer, f.addr, ph)
	if err != nil {
		return Classify(err), err
	}
	defer done()
	deadline := time.Now().Add(f.timeout)
	c.SetDeadline(deadline)
	switch f.Spec.Name {
	case "connect-close":
		return OK, nil // done closes it: a FIN, as a health check's close
	case "silent":
		return readReply(c)
	case "garbage":
		if _, err := c.Write(garbage(f.Spec.Seed, n, f.garbage)); err != nil {
			return Classify(err), err
		}
		return readReply(c)
	case "dribble":
		for i := range f.opening {
			if i > 0 {
				// A byte due after the deadline is not sent: the session
				// times out then. (The write would not always fail: a
				// deadline just past can take a moment to reach the poller.)
				wait := min(f.interval, time.Until(deadline))
				if err := sleep(ctx, wait); err != nil {
					return Aborted, err
				}
				if wait < f.interval {
					return Timeout, fmt.Errorf("dribbling byte %d of %d: %w", i+1, len(f.opening), os.ErrDeadlineExceeded)
				}
			}
			if _, err := c.Write(f.opening[i : i+1]); err != nil {
				return Classify(err), err
			}
		}
		return f.converse(c, ph)
	case "oversize-via", "unknown-route":
		if _, err := c.Write(f.opening); err != nil {
			return Classify(err), err
		}
		return f.converse(c, ph)
	case "rst":
		return f.reset(c.(*net.TCPConn))
	}
	return Error, fmt.Errorf("client fault %q: no such client fault", f.key)
}

// converse carries on a session whose opening has been written, as a
// normal session would: net.tcp waits for PreambleAck, makes the round
// trips and ends the session; http reads the response.
func (f *faultClient) converse(c net.Conn, ph *Phases) (string, error) {
	if f.protocol == HTTP {
		resp, err := readWholeResponse(bufio.NewReader(c), f.req)
		if err != nil {
			return classifyHTTP(err), err
		}
		return HTTPOutcome(resp.StatusCode), nil
	}
	return f.nt.converse(c, nil, ph, time.Now())
}

// reset gets as far as when= says and resets the connection. Whatever
// happens on the way, the connection ends with an RST: that is the fault.
func (f *faultClient) reset(c *net.TCPConn) (string, error) {
	defer c.SetLinger(0) // before the session's deferred close
	switch f.when {
	case "preamble":
		if _, err := c.Write(f.opening[:max(1, len(f.opening)/2)]); err != nil {
			return Classify(err), err
		}
	case "ack":
		if _, err := c.Write(f.opening); err != nil {
			return Classify(err), err
		}
		if f.protocol == HTTP {
			resp, err := http.ReadResponse(bufio.NewReader(c), f.req)
			if err != nil {
				return classifyHTTP(err), err
			}
			return HTTPOutcome(resp.StatusCode), nil // the body is left unread
		}
		if _, err := nmf.OpenWith(c, nil); err != nil {
			return classifyNMF(err), err
		}
	}
	return OK, nil
}

// readReply reads what a server says to a client that sent nothing or
// nonsense: an MC-NMF fault record, an HTTP response, or the end of the
// connection (eof, reset) or nothing until the deadline (timeout).
func readReply(c net.Conn) (string, error) {
	// A bufio.Reader of the default size is one that nmf's Reader reads
	// from as it is (bufio.NewReader returns it), peeked byte included.
	br := bufio.NewReader(c)
	b, err := br.Peek(1)
	if err != nil {
		return Classify(err), err
	}
	switch b[0] {
	case nmf.RecFault:
		rec, err := nmf.NewReader(br, 0).Next()
		if err == nil {
			err = &nmf.FaultError{Name: nmf.FaultName(string(rec.Payload))}
		}
		return classifyNMF(err), err
	case 'H':
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return classifyHTTP(err), err
		}
		resp.Body.Close()
		return HTTPOutcome(resp.StatusCode), nil
	}
	return ProtocolError, fmt.Errorf("a reply starting 0x%02x is neither an MC-NMF fault nor an HTTP response", b[0])
}

// garbage is the n-th garbage session's bytes: repeatable for a seed, and
// different from one session to the next.
func garbage(seed uint64, n int64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// faultPlan decides which sessions of a run are which client fault's.
//
// Spreading is exact and repeatable, not random: it is smooth weighted
// round robin (nginx's) over the faults in effect and the normal clients,
// whose weight is what the faults leave. Every session adds each one's
// ratio to its account; the fullest account takes the session (the first
// fault on a tie, the normal clients last) and gives up one whole session.
// Of N sessions in its window a fault so takes N·ratio rounded up or down,
// exactly N·ratio whenever that is whole (with up to three faults at once;
// with more, rarely one off), evenly spread: 5% of 2,000 sessions is
// exactly 100, every twentieth.
//
// It is not safe for concurrent use: the recorder picks under its lock
// (recorder.Start), where it counts the sessions too.
type faultPlan struct {
	clients []*faultClient
	acc     []int64 // per fault: its account, in units of 1/ratioUnit
	normal  int64   // the normal clients' account
}

// newFaultPlan returns the plan of o's client faults, nil if it has none.
func newFaultPlan(o Options) *faultPlan {
	if len(o.ClientFaults) == 0 {
		return nil
	}
	p := &faultPlan{acc: make([]int64, len(o.ClientFaults))}
	for _, f := range o.ClientFaults {
		p.clients = append(p.clients, newFaultClient(o, f))
	}
	return p
}

// pick says which client fault, if any, takes the session intended at
// offset from the run's start: the fault's index, or -1 for a normal
// session. Sessions must be picked in the order they start.
func (p *faultPlan) pick(offset time.Duration) int {
	if p == nil {
		return -1
	}
	k := -1
	normal := int64(ratioUnit)
	for i, f := range p.clients {
		if !f.Spec.Active(offset) {
			// Out of its window a fault's account is closed: it starts
			// afresh if the window opens again. The accounts keep
			// adding up to 0.
			p.normal += p.acc[i]
			p.acc[i] = 0
			continue
		}
		p.acc[i] += int64(f.units)
		normal -= int64(f.units)
		if k < 0 || p.acc[i] > p.acc[k] {
			k = i
		}
	}
	p.normal += normal
	if k < 0 || normal > 0 && p.normal > p.acc[k] {
		p.normal -= ratioUnit
		return -1
	}
	p.acc[k] -= ratioUnit
	return k
}

// events are the client faults' windows opening and closing in a send
// phase that began at start and lasted sent: each fault's window opens at
// its at= and closes for= later, and an edge at or after the end of the
// send phase was not in the run.
func (p *faultPlan) events(start time.Time, sent time.Duration) []faults.Event {
	if p == nil {
		return nil
	}
	type edge struct {
		at    time.Duration
		f     *faultClient
		phase faults.Phase
	}
	var edges []edge
	for _, f := range p.clients {
		if f.Spec.At < sent {
			edges = append(edges, edge{f.Spec.At, f, faults.Start})
		}
		if end, ok := f.Spec.End(); ok && end < sent {
			edges = append(edges, edge{end, f, faults.End})
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
	var events []faults.Event
	for _, e := range edges {
		s := e.f.Spec
		events = append(events, faults.Event{Time: start.Add(e.at), Fault: s.String(), Name: s.Name, Kind: s.Kind, Phase: e.phase,
			Source: "load", Detail: fmt.Sprintf("ratio %g of the load's sessions", e.f.Ratio)})
	}
	return events
}
