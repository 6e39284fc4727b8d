package loadgen

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/testutil"
)

func clientFault(t *testing.T, spec string, ratio float64) ClientFault {
	t.Helper()
	s, err := faults.Parse(faults.Client, spec)
	require.NoError(t, err)
	return ClientFault{Spec: s, Ratio: ratio}
}

// plan is the fault plan of a net.tcp run with fs.
func plan(t *testing.T, fs ...ClientFault) *faultPlan {
	t.Helper()
	o := Options{Target: target(t, "net.tcp://127.0.0.1:1/x/"), Pacer: &Constant{Per: 1}, Count: 1, ClientFaults: fs}
	require.NoError(t, o.defaults())
	return newFaultPlan(o)
}

// picks runs the plan over n sessions 10 ms apart and returns, per fault,
// the numbers of the sessions it took.
func picks(p *faultPlan, n int) map[int][]int {
	got := map[int][]int{}
	for i := range n {
		if k := p.pick(time.Duration(i) * 10 * time.Millisecond); k >= 0 {
			got[k] = append(got[k], i)
		}
	}
	return got
}

func TestClientFaultSpreadingIsExactAndEven(t *testing.T) {
	got := picks(plan(t, clientFault(t, "silent", 0.05)), 2000)
	require.Len(t, got[0], 100, "5%% of 2,000 sessions is exactly 100")
	for i, n := range got[0] {
		assert.Equal(t, 20*i+9, n, "every twentieth session, evenly")
	}
	assert.Equal(t, got, picks(plan(t, clientFault(t, "silent", 0.05)), 2000), "repeatable")

	// Ratios that binary floating point cannot hold exactly still count
	// exactly: 0.3 of 10 is 3, not 2.
	assert.Len(t, picks(plan(t, clientFault(t, "silent", 0.3)), 10)[0], 3)
	assert.Len(t, picks(plan(t, clientFault(t, "silent", 1)), 77)[0], 77)

	// Several faults share the sessions without taking one twice.
	got = picks(plan(t, clientFault(t, "silent", 0.2), clientFault(t, "connect-close", 0.3), clientFault(t, "garbage", 0.1)), 1000)
	assert.Len(t, got[0], 200)
	assert.Len(t, got[1], 300)
	assert.Len(t, got[2], 100)
	seen := map[int]bool{}
	for _, ns := range got {
		for _, n := range ns {
			require.False(t, seen[n], "session %d taken twice", n)
			seen[n] = true
		}
	}
	// Any number of sessions: each fault's share is rounded up or down.
	for n := range 300 {
		got = picks(plan(t, clientFault(t, "silent", 0.15), clientFault(t, "connect-close", 0.35)), n)
		assert.InDelta(t, 0.15*float64(n), len(got[0]), 1, "%d sessions", n)
		assert.InDelta(t, 0.35*float64(n), len(got[1]), 1, "%d sessions", n)
	}
	// Ratios that add up to 1 leave no session normal.
	got = picks(plan(t, clientFault(t, "silent", 0.5), clientFault(t, "connect-close", 0.5)), 1001)
	assert.Equal(t, 1001, len(got[0])+len(got[1]))
	assert.InDelta(t, 500, len(got[0]), 1)
}

func TestClientFaultOnlyInItsWindow(t *testing.T) {
	// 300 sessions 10 ms apart; the fault is in effect from 1 s to 2 s.
	got := picks(plan(t, clientFault(t, "silent:at=1s,for=1s", 0.5)), 300)
	require.Len(t, got[0], 50, "half of the 100 sessions in the window")
	assert.GreaterOrEqual(t, got[0][0], 100)
	assert.Less(t, got[0][len(got[0])-1], 200)

	got = picks(plan(t, clientFault(t, "silent:at=2s", 0.1)), 300)
	assert.Len(t, got[0], 10, "from 2 s to the end")
	assert.GreaterOrEqual(t, got[0][0], 200)

	// One fault after the other, each taking every session of its window.
	got = picks(plan(t, clientFault(t, "silent:for=1s", 1), clientFault(t, "connect-close:at=1s,for=1s", 1)), 300)
	require.Len(t, got[0], 100)
	require.Len(t, got[1], 100)
	assert.Equal(t, 99, got[0][99])
	assert.Equal(t, 100, got[1][0])
	assert.Equal(t, 199, got[1][99])
}

func TestClientFaultOptionsRefused(t *testing.T) {
	nt, tcp, web := target(t, "net.tcp://127.0.0.1:1/x/"), target(t, "tcp://127.0.0.1:1"), target(t, "http://127.0.0.1:1/")
	tls := target(t, "https://127.0.0.1:1/")
	worker := faults.MustParse(faults.Worker, "refuse")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent", 0)}}, "the ratio must be above 0 and at most 1"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent", 1.5)}}, "the ratio must be above 0 and at most 1"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent", 1e-12)}}, "below the smallest share"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent", 0.6), clientFault(t, "rst", 0.5)}}, "the ratios of the client faults in effect at 0s add up to 1.1"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent:for=2s", 0.6), clientFault(t, "rst:at=1s", 0.5)}}, "in effect at 1s add up to 1.1"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent", 0.1), clientFault(t, "silent", 0.1)}}, `"silent" is given twice`},
		{Options{Target: nt, ClientFaults: []ClientFault{{Spec: worker, Ratio: 0.1}}}, `"refuse" is not a client fault; client faults are connect-close, dribble`},
		{Options{Target: tcp, ClientFaults: []ClientFault{clientFault(t, "dribble", 0.1)}}, "a tcp:// storm sends raw bytes already"},
		{Options{Target: tcp, ClientFaults: []ClientFault{clientFault(t, "garbage", 0.1)}}, "a tcp:// storm sends raw bytes already"},
		{Options{Target: tcp, ClientFaults: []ClientFault{clientFault(t, "rst:when=ack", 0.1)}}, "a tcp:// storm sends raw bytes already"},
		{Options{Target: tls, ClientFaults: []ClientFault{clientFault(t, "unknown-route", 0.1)}}, "on https:// targets"},
		{Options{Target: web, Concurrency: 2, ClientFaults: []ClientFault{clientFault(t, "silent", 0.1)}}, "client faults need the open model (--rate) for http targets"},
		{Options{Target: nt, ClientFaults: []ClientFault{clientFault(t, "garbage:bytes=0", 0.1)}}, "bytes must be from 1"},
	} {
		if tc.o.Concurrency == 0 {
			tc.o.Pacer = &Constant{Per: 1}
		}
		tc.o.Count = 1
		_, err := Run(context.Background(), tc.o)
		var oe OptionsError
		require.ErrorAs(t, err, &oe, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
	// What is allowed.
	for _, o := range []Options{
		{Target: tcp, ClientFaults: []ClientFault{clientFault(t, "silent", 0.1), clientFault(t, "connect-close", 0.1), clientFault(t, "rst", 0.1)}},
		{Target: tls, ClientFaults: []ClientFault{clientFault(t, "garbage", 0.1), clientFault(t, "rst:when=connect", 0.1)}},
		{Target: web, ClientFaults: []ClientFault{clientFault(t, "dribble", 0.3), clientFault(t, "oversize-via", 0.3), clientFault(t, "unknown-route", 0.4)}},
		{Target: nt, Concurrency: 2, ClientFaults: []ClientFault{clientFault(t, "rst:when=preamble", 1)}},
		// Windows that do not overlap do not share sessions.
		{Target: nt, ClientFaults: []ClientFault{clientFault(t, "silent:for=1s", 1), clientFault(t, "rst:at=1s", 1)}},
	} {
		if o.Concurrency == 0 {
			o.Pacer = &Constant{Per: 1}
		}
		o.Count = 1
		assert.NoError(t, o.defaults(), "%v", o.ClientFaults)
	}
}

// Faulty sessions count in the attempts and in their own section, never in
// what the normal sessions measured.
func TestClientFaultsStayOutOfTheNormalResults(t *testing.T) {
	addr := echoServer(t)
	r := run(t, Options{Target: target(t, "net.tcp://"+addr+"/x/"), Pacer: &Constant{Per: 500}, Count: 100, Timeout: 300 * time.Millisecond,
		ClientFaults: []ClientFault{clientFault(t, "silent", 0.2)}})
	assert.Equal(t, int64(100), r.Attempts)
	assert.Equal(t, map[string]int64{OK: 80}, r.Outcomes)
	assert.Equal(t, int64(80), r.Latency.Count)
	assert.Equal(t, int64(80), r.Phases[PhaseConnect].Count)
	assert.Less(t, r.Latency.Max, int64(200_000), "the silent sessions' 300 ms are not in it")
	var series int64
	for _, s := range r.Series {
		series += s.Attempts + s.Errors
	}
	assert.Equal(t, int64(80), series, "the series has the normal sessions only")
	assert.Empty(t, r.Errors)
	require.Contains(t, r.ClientFaults, "silent")
	f := r.ClientFaults["silent"]
	assert.Equal(t, "silent", f.Name)
	assert.Equal(t, 0.2, f.Ratio)
	assert.Equal(t, int64(20), f.Sessions)
	assert.Equal(t, map[string]int64{Timeout: 20}, f.Outcomes, "the echo worker waits for a preamble that never comes")
	assert.Equal(t, int64(20), f.Latency.Count)
	assert.GreaterOrEqual(t, f.Latency.P50, int64(300_000))
	assert.NotEmpty(t, f.Latency.Hist, "the histogram is kept, so that merges are exact")
	require.Len(t, r.FaultEvents, 1, "a window from the start to the end: one start")
	assert.Equal(t, faults.Start, r.FaultEvents[0].Phase)
	assert.Equal(t, "load", r.FaultEvents[0].Source)
}

func TestClientFaultOutcomesAgainstSmallServers(t *testing.T) {
	echo := echoServer(t)
	fault := testutil.ReplyingServer(t, nmf.AppendFault(nil, nmf.FaultServerTooBusy))
	status := testutil.ReplyingServer(t, []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
	other := testutil.ReplyingServer(t, []byte("SSH-2.0-x\r\n"))
	closing := testutil.ClosingServer(t, 50*time.Millisecond)
	for _, tc := range []struct {
		addr, spec string
		want       string
	}{
		{echo, "connect-close", OK},
		{echo, "rst", OK},
		{echo, "rst:when=preamble", OK},
		{echo, "rst:when=ack", OK},
		{fault, "rst:when=ack", FaultOutcome(nmf.FaultServerTooBusy)},
		{echo, "dribble:interval=1ms", OK},
		{echo, "oversize-via", FaultOutcome(nmf.FaultViaTooLong)}, // the service refuses it as WCF does
		{echo, "dribble:interval=50ms", Timeout},
		{fault, "garbage", FaultOutcome(nmf.FaultServerTooBusy)},
		{status, "garbage:bytes=10,seed=7", HTTPOutcome(400)},
		{status, "silent", HTTPOutcome(400)},
		{other, "silent", ProtocolError},
		{closing, "silent", EOF},
		// A server that closes with our preamble unread makes its kernel
		// send RST.
		{closing, "unknown-route", Reset},
	} {
		r := run(t, Options{Target: target(t, "net.tcp://"+tc.addr+"/x/"), Pacer: &Constant{Per: 200}, Count: 4, Messages: 2, Timeout: 500 * time.Millisecond,
			ClientFaults: []ClientFault{clientFault(t, tc.spec, 1)}})
		f := r.ClientFaults[tc.spec]
		require.NotNil(t, f, tc.spec)
		assert.Equal(t, map[string]int64{tc.want: 4}, f.Outcomes, "%s against %s: %v", tc.spec, tc.addr, f.Errors)
		assert.Empty(t, r.Outcomes, "every session was faulty")
	}
}

func TestClientFaultsOverHTTP(t *testing.T) {
	var mu sync.Mutex
	var heads []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		heads = append(heads, len(r.URL.Path))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r := run(t, Options{Target: target(t, srv.URL+"/api/items"), Pacer: &Constant{Per: 200}, Count: 40,
		ClientFaults: []ClientFault{clientFault(t, "unknown-route", 0.25), clientFault(t, "dribble:interval=1ms", 0.25), clientFault(t, "oversize-via:len=3000", 0.25)}})
	assert.Equal(t, map[string]int64{OK: 10}, r.Outcomes)
	assert.Equal(t, map[string]int64{HTTPOutcome(404): 10}, r.ClientFaults["unknown-route"].Outcomes)
	assert.Equal(t, map[string]int64{OK: 10}, r.ClientFaults["dribble:interval=1ms"].Outcomes)
	assert.Equal(t, map[string]int64{OK: 10}, r.ClientFaults["oversize-via:len=3000"].Outcomes, "a head of 3,000 bytes is within Go's limits")
	long := 0
	mu.Lock()
	defer mu.Unlock()
	for _, n := range heads {
		if n > 2000 {
			long++
		}
	}
	assert.Equal(t, 10, long, "the padding is in the request path: %v", heads)
}

func TestOversizeLengths(t *testing.T) {
	o := Options{Target: target(t, "net.tcp://127.0.0.1:8808/orders"), Method: "GET", MessageSize: 1}
	f := newFaultClient(o, clientFault(t, "oversize-via", 1))
	var d nmf.PreambleDecoder
	_, _, err := d.Feed(f.opening)
	var de *nmf.DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, nmf.FaultViaTooLong, de.Fault)
	f = newFaultClient(o, clientFault(t, "oversize-via:len=2049", 1))
	d = nmf.PreambleDecoder{}
	_, _, err = d.Feed(f.opening)
	require.ErrorAs(t, err, &de, "one byte over the limit")
	assert.Equal(t, nmf.FaultViaTooLong, de.Fault)
	assert.Contains(t, string(f.opening), "net.tcp://127.0.0.1:8808/orders/xxx", "a segment of its own: the route still matches")
	assert.NotContains(t, string(f.opening), "x"+strings.Repeat("x", 2049), "len= is the whole Via's length")

	o = Options{Target: target(t, "http://127.0.0.1:8808/api/?q=1"), Method: "GET"}
	f = newFaultClient(o, clientFault(t, "oversize-via", 1))
	assert.Len(t, httpHead(f.opening), defaultHTTPOversize)
	assert.True(t, strings.HasPrefix(string(f.opening), "GET /api/xxx"), "%.20s", f.opening)
	assert.Contains(t, string(f.opening[:defaultHTTPOversize]), "xx?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8808\r\n")
	f = newFaultClient(o, clientFault(t, "unknown-route", 1))
	assert.True(t, strings.HasPrefix(string(f.opening), "GET /portshare-unknown-route/ HTTP/1.1\r\n"))
}

func TestGarbageIsSeeded(t *testing.T) {
	assert.Equal(t, garbage(1, 5, 64), garbage(1, 5, 64))
	assert.NotEqual(t, garbage(1, 5, 64), garbage(1, 6, 64), "each session its own bytes")
	assert.NotEqual(t, garbage(1, 5, 64), garbage(2, 5, 64))
	assert.Len(t, garbage(1, 0, 3), 3)
}

func TestClientFaultWindowEvents(t *testing.T) {
	addr := echoServer(t)
	r := run(t, Options{Target: target(t, "net.tcp://"+addr+"/x/"), Pacer: &Constant{Per: 200}, Duration: 600 * time.Millisecond,
		ClientFaults: []ClientFault{
			clientFault(t, "connect-close:at=200ms,for=200ms", 0.5),
			clientFault(t, "rst:at=500ms,for=1s", 0.25), // lasts past the end
			clientFault(t, "silent:at=2s", 1),           // after the end: never in effect
		}})
	assert.Equal(t, int64(120), r.Attempts)
	cc := r.ClientFaults["connect-close:at=200ms,for=200ms"]
	assert.Equal(t, int64(20), cc.Sessions, "half the 40 sessions intended from 200 ms to 400 ms")
	assert.Equal(t, int64(5), r.ClientFaults["rst:at=500ms,for=1s"].Sessions)
	assert.Zero(t, r.ClientFaults["silent:at=2s"].Sessions)
	assert.Equal(t, int64(95), r.Outcomes[OK])
	// The windows' edges are where the spec puts them, from the run's
	// start, up to the end of the send phase.
	event := func(fault, name string, phase faults.Phase, at time.Duration, ratio string) faults.Event {
		return faults.Event{Time: r.Started.Add(at), Fault: fault, Name: name, Kind: faults.Client, Phase: phase, Source: "load", Detail: "ratio " + ratio + " of the load's sessions"}
	}
	assert.Equal(t, []faults.Event{
		event("connect-close:at=200ms,for=200ms", "connect-close", faults.Start, 200*time.Millisecond, "0.5"),
		event("connect-close:at=200ms,for=200ms", "connect-close", faults.End, 400*time.Millisecond, "0.5"),
		event("rst:at=500ms,for=1s", "rst", faults.Start, 500*time.Millisecond, "0.25"),
	}, r.FaultEvents)
}

// faultRecorder is a recorder of a net.tcp run with client faults fs.
func faultRecorder(start time.Time, fs ...ClientFault) *recorder {
	t, _ := ParseTarget("net.tcp://127.0.0.1:1/x/")
	rec := newRecorder(start)
	rec.setPlan(newFaultPlan(Options{Target: t, Messages: 1, MessageSize: 64, ClientFaults: fs}))
	return rec
}

// faultFixture is fixture with a client fault section: n sessions of
// latency base, base+1µs, …, ending in outcome.
func faultFixture(n int, base time.Duration, outcome string) *Result {
	r := fixture(n, base, OK)
	rec := faultRecorder(r.Started, ClientFault{Spec: faults.MustParse(faults.Client, "silent"), Ratio: 1})
	for i := range n {
		if k, _ := rec.Start(0, r.Started, false); k != 0 {
			panic("a ratio of 1 takes every session")
		}
		rec.FinishedFault(0, base+time.Duration(i)*time.Microsecond, outcome, nil)
	}
	f := rec.faultResults()[0]
	f.Name, f.Ratio = "silent", 0.2
	r.ClientFaults = map[string]*FaultResult{"silent": f}
	r.Attempts += int64(n)
	s := faults.MustParse(faults.Client, "silent")
	log := faults.NewLog("load", nil, nil)
	log.Add(s, faults.Start, "ratio 0.2")
	r.FaultEvents = log.Events()
	return r
}

func TestClientFaultsSurviveTheFileAndMerge(t *testing.T) {
	a := faultFixture(100, time.Second, Reset)
	var buf bytes.Buffer
	require.NoError(t, a.WriteJSON(&buf))
	for _, key := range []string{`"client_faults"`, `"ratio"`, `"sessions"`, `"fault_events"`, `"phase": "start"`} {
		assert.Contains(t, buf.String(), key)
	}
	back, err := ReadResult(&buf)
	require.NoError(t, err)
	f := back.ClientFaults["silent"]
	require.NotNil(t, f)
	assert.Equal(t, a.ClientFaults["silent"].Outcomes, f.Outcomes)
	assert.Equal(t, int64(100), f.Sessions)
	h, err := f.Latency.Histogram()
	require.NoError(t, err)
	orig, _ := a.ClientFaults["silent"].Latency.Histogram()
	assert.True(t, orig.Equals(h), "the histogram survives the file exactly")
	require.Len(t, back.FaultEvents, 1)
	assert.Equal(t, "silent", back.FaultEvents[0].Fault)

	b := faultFixture(50, 2*time.Second, Timeout)
	m, err := Merge(back, b)
	require.NoError(t, err)
	mf := m.ClientFaults["silent"]
	assert.Equal(t, int64(150), mf.Sessions)
	assert.Equal(t, map[string]int64{Reset: 100, Timeout: 50}, mf.Outcomes)
	assert.Equal(t, int64(150), mf.Latency.Count)
	assert.InDelta(t, 2_000_000, mf.Latency.P90, 5_000, "the slower third decides p90")
	assert.Equal(t, 0.2, mf.Ratio)
	assert.Equal(t, int64(300), m.Attempts)
	assert.Empty(t, m.FaultEvents, "events belong to one run")
	mh, err := mf.Latency.Histogram()
	require.NoError(t, err)
	assert.Equal(t, int64(150), mh.TotalCount())
	// The merge left its inputs as they were.
	assert.Equal(t, int64(100), back.ClientFaults["silent"].Latency.Count)

	var out bytes.Buffer
	require.NoError(t, WriteSummary(&out, m))
	assert.Contains(t, out.String(), "(the 150 normal sessions)")
	assert.Contains(t, out.String(), "client fault  silent (ratio 0.2): 150 sessions: reset 100, timeout 50; session p50 ")

	// Other faults, or other ratios, are another load.
	c := faultFixture(10, time.Second, Reset)
	c.ClientFaults["silent"].Ratio = 0.3
	_, err = Merge(a, c)
	assert.ErrorContains(t, err, "client faults silent ×0.2 against silent ×0.3")
	_, err = Merge(a, fixture(10, time.Second, OK))
	assert.ErrorContains(t, err, "do not mix")
	_, err = Merge(fixture(10, time.Second, OK), a)
	assert.ErrorContains(t, err, "against silent ×0.2")
}

func TestReadResultRefusesDamagedClientFaults(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, faultFixture(10, time.Millisecond, Reset).WriteJSON(&buf))
	good := buf.String()
	_, err := ReadResult(strings.NewReader(good))
	require.NoError(t, err)
	for name, doc := range map[string]string{
		"null fault":         strings.Replace(good, `"silent": {`, `"x": null, "silent": {`, 1),
		"ratio 0":            strings.Replace(good, `"ratio": 0.2`, `"ratio": 0`, 1),
		"ratio above 1":      strings.Replace(good, `"ratio": 0.2`, `"ratio": 1.5`, 1),
		"negative sessions":  strings.Replace(good, `"sessions": 10`, `"sessions": -1`, 1),
		"bad histogram":      strings.Replace(good, `"client_faults": {`, `"client_faults": {"y": {"ratio": 0.1, "latency_us": {"hdr": "%%%"}},`, 1),
		"event without name": strings.Replace(good, `"fault_events": [`, `"fault_events": [{"phase": "start"},`, 1),
		"event phase":        strings.Replace(good, `"phase": "start"`, `"phase": "middle"`, 1),
	} {
		require.NotEqual(t, good, doc, name)
		_, err := ReadResult(strings.NewReader(doc))
		assert.Error(t, err, name)
	}
}

// A run with client faults leaves no descriptor behind, whatever its
// faulty sessions did to their connections.
func TestClientFaultRunsLeaveNoDescriptorsBehind(t *testing.T) {
	echo := echoServer(t)
	srv := httptest.NewServer(refworker.Handler("w"))
	t.Cleanup(srv.Close)
	silent := testutil.ClosingServer(t, 100*time.Millisecond)
	every := func(names ...string) []ClientFault {
		var fs []ClientFault
		for _, n := range names {
			fs = append(fs, clientFault(t, n, 0.1))
		}
		return fs
	}
	runs := []Options{
		{Target: target(t, "net.tcp://"+echo+"/x"), Pacer: &Constant{Per: 500}, Count: 200, Timeout: 300 * time.Millisecond,
			ClientFaults: every("silent", "dribble:interval=1ms", "garbage", "oversize-via", "unknown-route", "rst", "rst:when=preamble", "rst:when=ack", "connect-close")},
		{Target: target(t, srv.URL+"/"), Pacer: &Constant{Per: 500}, Count: 200, Timeout: 300 * time.Millisecond,
			ClientFaults: every("silent", "dribble:interval=1ms", "garbage", "oversize-via", "unknown-route", "rst", "rst:when=preamble", "rst:when=ack", "connect-close")},
		{Target: target(t, "tcp://"+silent), Pacer: &Constant{Per: 500}, Count: 100, Hold: 10 * time.Millisecond,
			ClientFaults: every("silent", "rst", "connect-close")},
		{Target: target(t, "net.tcp://"+echo+"/x"), Concurrency: 4, Count: 100, Timeout: 300 * time.Millisecond,
			ClientFaults: every("silent", "rst:when=ack")},
	}
	run(t, runs[0]) // warm up what the runtime opens once
	before := testutil.FDCount(t, os.Getpid())
	for _, o := range runs {
		r := run(t, o)
		var faulty int64
		for _, f := range r.ClientFaults {
			faulty += f.Sessions
			var ended int64
			for _, n := range f.Outcomes {
				ended += n
			}
			assert.Equal(t, f.Sessions, ended, "every faulty session ends in one outcome")
		}
		assert.Positive(t, faulty)
	}
	srv.CloseClientConnections()
	testutil.Eventually(t, 5*time.Second, func() bool { return testutil.FDCount(t, os.Getpid()) == before },
		"descriptors did not return to the %d open before the runs", before)
}

// An interrupted run ends within its grace, whatever fault windows it
// had yet to open (here 10 s on, in a 30 s run), and has no events of
// those.
func TestClientFaultsInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	r, err := Run(ctx, Options{Target: target(t, "net.tcp://"+testutil.SilentServer(t)+"/x"), Pacer: &Constant{Per: 100}, Duration: 30 * time.Second,
		Timeout: 20 * time.Second, Grace: 100 * time.Millisecond, ClientFaults: []ClientFault{clientFault(t, "silent:at=10s,for=1s", 0.5)}})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, "interrupted", r.Stopped)
	assert.Empty(t, r.FaultEvents, "the window never opened")
	assert.Zero(t, r.ClientFaults["silent:at=10s,for=1s"].Sessions)
}

func TestRecorderWithClientFaultsStillAllocatesNothing(t *testing.T) {
	start := time.Now()
	rec := faultRecorder(start, clientFault(t, "silent", 0.25), clientFault(t, "rst", 0.25))
	ph := &Phases{Connect: 100 * time.Microsecond, rec: rec}
	var kinds [3]int // normal, fault 0, fault 1
	allocs := testing.AllocsPerRun(1000, func() {
		k, _ := rec.Start(0, start, false)
		kinds[k+1]++
		if k < 0 {
			rec.Finished(start, 300*time.Microsecond, OK, ph, nil)
		} else {
			rec.FinishedFault(k, time.Millisecond, Reset, nil)
		}
	})
	assert.Zero(t, allocs)
	for k, n := range kinds {
		assert.Positive(t, n, "sessions of kind %d (0: normal) were measured too", k)
	}
}

// BenchmarkStartWithClientFaults is the per-session start of a run whose
// every session a client fault takes: the pick and the counts, under the
// recorder's one lock, and nothing allocated.
func BenchmarkStartWithClientFaults(b *testing.B) {
	start := time.Now()
	rec := faultRecorder(start, ClientFault{Spec: faults.MustParse(faults.Client, "silent"), Ratio: 1})
	b.ReportAllocs()
	for i := range b.N {
		rec.Start(time.Duration(i)*time.Microsecond, start, false)
	}
}
