package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rakyll/hey/requester"
)

// heyEpoch is the origin of hey's request offsets: hey measures them from
// its package's initialisation, which runs just before ours (we import
// it), so offsets from heyEpoch are right to within microseconds.
var heyEpoch = time.Now()

// heyMaxResults is how many results hey keeps: it holds every one in
// memory, so closed-model HTTP runs are bounded by it.
const heyMaxResults = 1_000_000

// heyTemplate makes hey print one line per response ("r" latency, connect,
// wait for the first byte, status, offset; seconds) and one per distinct
// error ("e" count, message as a JSON string). hey's own JSON output
// ({{ jsonify . }}) prints nothing at all when every request failed: its
// averages divide by zero and the NaN does not marshal.
const heyTemplate = `{{ range $i, $l := .Lats }}r {{ $l }} {{ index $.ConnLats $i }} {{ index $.DelayLats $i }} {{ index $.StatusCodes $i }} {{ index $.Offsets $i }}
{{ end }}{{ range $msg, $n := .ErrorDist }}e {{ $n }} {{ jsonify $msg }}
{{ end }}`

// runHey runs a closed-model HTTP load on hey's requester.Work. Its quirks,
// and what we do about them:
//   - it splits N evenly over C workers and drops the remainder: the count
//     is rounded up to a multiple of C (and a note says so);
//   - its per-request results are unexported: they come out through the
//     Output template above;
//   - it keeps every result in memory: runs are bounded by heyMaxResults;
//   - its QPS limit is per worker: closed runs set none (rates belong to
//     the open model, on our own pacer);
//   - failed requests are reported by message only, without times: they
//     count in the outcomes, not in the latencies or the time series;
//   - its DisableRedirects option races (every worker sets the shared
//     client's CheckRedirect), so redirects are followed, where the open
//     model counts a 3xx as http:3xx (FORMAT.md says so);
//   - one Work runs once; its keep-alive connections outlive Run: we track
//     them through a trace hook and close them. A connection it dialed for
//     a request that another connection served first never reaches the
//     hook: it stays idle until the server closes it or the process exits.
func runHey(ctx context.Context, o Options) (*Result, error) {
	c := o.Concurrency
	limit := int64(heyMaxResults) / int64(c) * int64(c)
	n := limit
	if o.Count > 0 {
		if o.Count > limit {
			return nil, optionsErrorf("closed-model HTTP runs on hey, which keeps at most %d results: with %d clients the count is limited to %d (use --rate for longer runs)", heyMaxResults, c, limit)
		}
		n = (o.Count + int64(c) - 1) / int64(c) * int64(c) // ≤ limit, a multiple of c
	}
	var body []byte
	if bodyMethod(o.Method) {
		body = bytes.Repeat([]byte{'x'}, o.MessageSize)
	}
	base, err := http.NewRequest(o.Method, o.Target.URL, nil)
	if err != nil {
		return nil, optionsErrorf("target %q: %v", o.Target.URI, err)
	}

	e := newEngine(ctx, o, "hey")
	defer e.close()
	if o.Count > 0 && n != o.Count {
		e.rec.Note(fmt.Sprintf("hey splits the count evenly over the workers: %d requests were made for --count %d", n, o.Count))
	}
	conns := &connSet{m: map[net.Conn]struct{}{}}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conns.add(i.Conn) }}
	reqCtx := httptrace.WithClientTrace(e.sessCtx, trace)
	out := &heyParser{rec: e.rec}
	w := &requester.Work{
		Request: base,
		RequestFunc: func() *http.Request {
			e.rec.Started(time.Now(), false)
			r := base.Clone(reqCtx)
			if body != nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
			}
			return r
		},
		N:                  int(n),
		C:                  c,
		Timeout:            int(math.Ceil(o.Timeout.Seconds())),
		DisableCompression: true,
		DisableKeepAlives:  o.NewConnections,
		Output:             heyTemplate,
		Writer:             out,
	}
	w.Init()
	e.rec.inFlight.Store(int64(c))
	ran := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		deadline, stop := e.sendDeadline()
		defer stop()
		select {
		case <-ran:
			return
		case <-deadline:
		case <-ctx.Done():
			e.stopped, e.cut = "interrupted", cutInterrupted
		}
		e.sendEnd = time.Now()
		w.Stop()
		if e.stopped != "" {
			// Requests in flight get Grace, then their contexts end.
			t := time.NewTimer(o.Grace)
			defer t.Stop()
			select {
			case <-ran:
			case <-t.C:
				e.cancelSess()
			}
		}
	})
	w.Run()
	close(ran)
	watch.Wait()
	if e.sendEnd.IsZero() {
		e.sendEnd = time.Now()
	}
	e.rec.inFlight.Store(0)
	conns.closeAll()
	if out.err != nil {
		return nil, fmt.Errorf("reading hey's results: %v", out.err)
	}
	if out.untimed > 0 {
		e.rec.Note(fmt.Sprintf("hey reports failed requests without their times: %d failures count in the outcomes but not in the latencies or the time series", out.untimed))
	}
	if o.Count == 0 && e.stopped == "" && e.rec.attempts >= limit {
		e.stopped = fmt.Sprintf("hey's limit of %d results", n)
	}
	return e.finish(), nil
}

// connSet is the connections hey's transport opened.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		c.Close()
	}
	clear(s.m)
}

// heyParser reads the lines heyTemplate makes and records them.
type heyParser struct {
	rec     *recorder
	partial []byte
	untimed int64
	err     error
}

func (p *heyParser) Write(b []byte) (int, error) {
	n := len(b)
	if len(p.partial) > 0 { // complete the line a previous write began
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			return n, nil
		}
		p.line(string(append(p.partial, b[:i]...)))
		p.partial, b = p.partial[:0], b[i+1:]
	}
	// hey writes its whole output at once: read the lines in place.
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		p.line(string(b[:i]))
		b = b[i+1:]
	}
	p.partial = append(p.partial, b...)
	return n, nil
}

func (p *heyParser) line(l string) {
	if p.err != nil || strings.TrimSpace(l) == "" {
		return
	}
	kind, rest, _ := strings.Cut(l, " ")
	switch kind {
	case "r":
		var v [5]float64
		f := strings.Fields(rest)
		if len(f) != 5 {
			p.err = fmt.Errorf("bad result line %q", l)
			return
		}
		for i, s := range f {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				p.err = fmt.Errorf("bad result line %q", l)
				return
			}
			v[i] = x
		}
		sec := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
		lat := sec(v[0])
		end := heyEpoch.Add(sec(v[4]) + lat)
		p.rec.Finished(end, lat, HTTPOutcome(int(v[3])), &Phases{Connect: sec(v[1]), Handshake: sec(v[2])}, nil)
	case "e":
		count, msg, _ := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(count, 10, 64)
		var m string
		if err == nil {
			err = json.Unmarshal([]byte(msg), &m)
		}
		if err != nil {
			p.err = fmt.Errorf("bad error line %q", l)
			return
		}
		p.rec.Untimed(classifyMessage(m), m, n)
		p.untimed += n
	default:
		p.err = fmt.Errorf("unexpected line %q", l)
	}
}
