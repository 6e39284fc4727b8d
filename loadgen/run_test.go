package loadgen

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/testutil"
)

// echoServer is the reference echo worker on a socket of its own.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { refworker.Serve(ctx, ln, refworker.Options{Name: "echo", Mode: refworker.Echo}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ln.Addr().String()
}

func target(t *testing.T, uri string) Target {
	t.Helper()
	tg, err := ParseTarget(uri)
	require.NoError(t, err)
	return tg
}

func run(t *testing.T, o Options) *Result {
	t.Helper()
	r, err := Run(context.Background(), o)
	require.NoError(t, err)
	return r
}

func TestOpenModelKeepsItsRate(t *testing.T) {
	addr := echoServer(t)
	r := run(t, Options{Target: target(t, "net.tcp://"+addr+"/orders/"), Pacer: &Constant{Per: 300}, Duration: 2 * time.Second, Messages: 2})
	// Arrivals are scheduled, not timed: exactly rate × duration are due.
	// On a busy machine the last one can wake more than late-after behind
	// as the window closes, and is then unsent rather than sent late.
	assert.Equal(t, int64(600), r.Attempts+r.Unsent, "every arrival is sent or counted unsent")
	assert.LessOrEqual(t, r.Unsent, int64(2), "only arrivals at the very end may miss the window")
	assert.Equal(t, map[string]int64{OK: r.Attempts}, r.Outcomes)
	assert.InDelta(t, 300, r.AchievedRate, 1.001)
	assert.InDelta(t, 300, r.TargetRate, 0.001)
	require.GreaterOrEqual(t, len(r.Series), 2)
	for _, s := range r.Series[:2] {
		assert.InDelta(t, 300, s.Attempts, 45, "second %d", s.T)
	}
	assert.Equal(t, 2*r.Attempts, r.Phases[PhaseMessage].Count)
	assert.Equal(t, r.Attempts, r.Phases[PhaseConnect].Count)
	assert.Equal(t, r.Attempts, r.Phases[PhaseHandshake].Count)
	assert.Equal(t, "open", r.Model)
	t.Logf("late sends at 300/s: %d of %d; session p50 %dµs p99 %dµs", r.LateSends, r.Attempts, r.Latency.P50, r.Latency.P99)
}

// stallingHTTP is an HTTP server that answers nothing between from and
// from+stall after it starts: requests in that window wait until it ends.
func stallingHTTP(t *testing.T, from, stall time.Duration) string {
	t.Helper()
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if since := time.Since(start); since >= from && since < from+stall {
			time.Sleep(from + stall - since)
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A server that stalls for a second must show up as latency of about a
// second in the open model. hey's closed model, against the same stall,
// reports only the few requests its clients had in flight.
func TestStallShowsUpAsLatency(t *testing.T) {
	const stall = time.Second
	open := run(t, Options{Target: target(t, stallingHTTP(t, time.Second, stall)+"/"), Pacer: &Constant{Per: 300}, Duration: 3 * time.Second})
	require.Equal(t, int64(900), open.Outcomes[OK])
	assert.GreaterOrEqual(t, open.Latency.Max, int64(stall/time.Microsecond)*95/100)
	assert.GreaterOrEqual(t, open.Latency.P99, int64(stall/time.Microsecond)*90/100, "p99 %dµs", open.Latency.P99)

	closed := run(t, Options{Target: target(t, stallingHTTP(t, time.Second, stall)+"/"), Concurrency: 4, Duration: 3 * time.Second})
	assert.Equal(t, "hey", closed.Engine)
	assert.Less(t, closed.Latency.P99, open.Latency.P99)
	t.Logf("1 s stall: open model p99 %s max %s over %d requests; hey's closed model (4 clients) p99 %s max %s over %d requests",
		us(open.Latency.P99), us(open.Latency.Max), open.Attempts, us(closed.Latency.P99), us(closed.Latency.Max), closed.Attempts)
}

func TestInFlightCapMakesSendsLateNotUnbounded(t *testing.T) {
	r := run(t, Options{Target: target(t, "net.tcp://"+testutil.SilentServer(t)+"/x"), Pacer: &Constant{Per: 200}, Duration: time.Second,
		MaxInFlight: 10, Timeout: 300 * time.Millisecond})
	for _, s := range r.Series {
		assert.LessOrEqual(t, s.InFlight, int64(10))
	}
	assert.Equal(t, r.Attempts, r.Outcomes[Timeout])
	assert.Equal(t, int64(200), r.Attempts+r.Unsent)
	assert.Less(t, r.Attempts, int64(100), "10 slots of 300 ms each cannot start 200 sessions in a second")
	assert.Greater(t, r.LateSends, r.Unsent)
	assert.Contains(t, r.Stopped, "sessions in flight (the cap)")
}

func TestInterruptAbortsSessionsInFlightAndStillReturns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	r, err := Run(ctx, Options{Target: target(t, "net.tcp://"+testutil.SilentServer(t)+"/x"), Pacer: &Constant{Per: 100}, Duration: 30 * time.Second,
		Timeout: 20 * time.Second, Grace: 200 * time.Millisecond})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, "interrupted", r.Stopped)
	assert.Equal(t, map[string]int64{Aborted: r.Attempts}, r.Outcomes)
	assert.Zero(t, r.Phases[PhaseSession].Count, "aborted sessions say nothing about the target's latency")
	assert.Zero(t, r.Unsent, "the user stopped the run: nothing was due")
}

func TestClosedModelRunsExactlyCount(t *testing.T) {
	r := run(t, Options{Target: target(t, "net.tcp://"+echoServer(t)+"/x"), Concurrency: 4, Count: 50})
	assert.Equal(t, int64(50), r.Attempts)
	assert.Equal(t, map[string]int64{OK: 50}, r.Outcomes)
	assert.Equal(t, "closed", r.Model)
	assert.Equal(t, 4, r.Concurrency)
}

func TestStormOutcomes(t *testing.T) {
	storm := func(addr string, hold time.Duration, send string) map[string]int64 {
		return run(t, Options{Target: target(t, "tcp://"+addr), Pacer: &Constant{Per: 100}, Count: 10, Hold: hold,
			Send: []byte(send), SendDelay: time.Millisecond, ConnectTimeout: 300 * time.Millisecond}).Outcomes
	}
	assert.Equal(t, map[string]int64{OK: 10}, storm(testutil.SilentServer(t), 100*time.Millisecond, "hello"))
	assert.Equal(t, map[string]int64{EOF: 10}, storm(testutil.ClosingServer(t, 20*time.Millisecond), time.Second, ""))
	// A server that closes with our bytes unread makes its kernel send RST.
	assert.Equal(t, map[string]int64{Reset: 10}, storm(testutil.ClosingServer(t, 20*time.Millisecond), time.Second, "hello"))
	assert.Equal(t, map[string]int64{Refused: 10}, storm(testutil.ClosedPort(t), 0, ""))
	assert.Equal(t, map[string]int64{ConnectTimeout: 10}, storm(testutil.FullBacklog(t), 0, ""))
	reset := storm(testutil.ResetServer(t), time.Second, "")
	assert.Equal(t, int64(10), reset[Reset], "%v", reset)
}

// A full accept queue shows in the result from the kernel's side too: the
// SYNs it dropped are ListenOverflows of the namespace the run shares with
// the server.
func TestResultRecordsKernelListenOverflows(t *testing.T) {
	r := run(t, Options{Target: target(t, "tcp://"+testutil.FullBacklog(t)), Pacer: &Constant{Per: 100}, Count: 5, ConnectTimeout: 300 * time.Millisecond})
	require.NotNil(t, r.TCPExt)
	assert.GreaterOrEqual(t, r.TCPExt["ListenOverflows"], int64(5), "each SYN dropped at least once: %v", r.TCPExt)
	for _, k := range KernelCounters {
		assert.Contains(t, r.TCPExt, k)
	}
	var b strings.Builder
	require.NoError(t, WriteSummary(&b, r))
	assert.Contains(t, b.String(), "ListenOverflows +")
}

func TestNetTCPProtocolOutcomes(t *testing.T) {
	silent := run(t, Options{Target: target(t, "net.tcp://"+testutil.SilentServer(t)+"/x"), Pacer: &Constant{Per: 100}, Count: 3, Timeout: 100 * time.Millisecond})
	assert.Equal(t, map[string]int64{Timeout: 3}, silent.Outcomes)
	closing := run(t, Options{Target: target(t, "net.tcp://"+testutil.ClosingServer(t, 0)+"/x"), Pacer: &Constant{Per: 100}, Count: 3})
	// EOF, or RST if the preamble was already in the closing server's buffer.
	assert.Equal(t, int64(3), closing.Outcomes[EOF]+closing.Outcomes[Reset], "%v", closing.Outcomes)
	http400 := testutil.ReplyingServer(t, []byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	proto := run(t, Options{Target: target(t, "net.tcp://"+http400+"/x"), Pacer: &Constant{Per: 100}, Count: 3})
	assert.Equal(t, map[string]int64{ProtocolError: 3}, proto.Outcomes)
}

func TestHeyClosedModel(t *testing.T) {
	srv := httptest.NewServer(refworker.Handler("w"))
	t.Cleanup(srv.Close)
	r := run(t, Options{Target: target(t, srv.URL+"/api"), Concurrency: 4, Count: 10})
	assert.Equal(t, "hey", r.Engine)
	assert.Equal(t, int64(12), r.Attempts, "hey splits the count evenly over its workers")
	assert.Equal(t, map[string]int64{OK: 12}, r.Outcomes)
	require.Len(t, r.Notes, 1)
	assert.Contains(t, r.Notes[0], "12 requests were made for --count 10")
	var ok int64
	for _, s := range r.Series {
		ok += s.OK
	}
	assert.Equal(t, int64(12), ok, "hey's responses are placed in the time series by their offsets")

	// Every request failing still gives results (hey's own JSON output
	// would be empty).
	dead := run(t, Options{Target: target(t, "http://"+testutil.ClosedPort(t)+"/"), Concurrency: 2, Count: 8})
	assert.Equal(t, map[string]int64{Refused: 8}, dead.Outcomes)
	assert.Len(t, dead.Errors, 1)

	notFound := run(t, Options{Target: target(t, srv.URL+"/"), Concurrency: 2, Count: 4, Method: "POST", MessageSize: 10})
	assert.Equal(t, map[string]int64{OK: 4}, notFound.Outcomes)
}

func TestOpenHTTPOutcomes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	ok := run(t, Options{Target: target(t, srv.URL+"/"), Pacer: &Constant{Per: 200}, Count: 20})
	assert.Equal(t, map[string]int64{OK: 20}, ok.Outcomes)
	assert.Equal(t, int64(20), ok.Phases[PhaseHandshake].Count)
	missing := run(t, Options{Target: target(t, srv.URL+"/missing"), Pacer: &Constant{Per: 200}, Count: 20})
	assert.Equal(t, map[string]int64{"http:404": 20}, missing.Outcomes)
	assert.Equal(t, int64(20), missing.Phases[PhaseSession].Count, "failed sessions count in the latency")
	assert.Zero(t, missing.Phases[PhaseSessionOK].Count)
}

func TestOptionsMustBound(t *testing.T) {
	tg := target(t, "tcp://127.0.0.1:1")
	for _, o := range []Options{
		{Target: tg, Pacer: &Constant{Per: 1}},
		{Target: tg, Duration: time.Second},
		{Target: tg, Pacer: &Constant{Per: 1}, Concurrency: 2, Count: 1},
		{Target: tg, Concurrency: 5, Count: 1, MaxInFlight: 2},
	} {
		_, err := Run(context.Background(), o)
		assert.Error(t, err)
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]Target{
		"net.tcp://127.0.0.1:8808/orders/": {URI: "net.tcp://127.0.0.1:8808/orders/", URL: "net.tcp://127.0.0.1:8808/orders/", Protocol: NetTCP, Addr: "127.0.0.1:8808"},
		"NET.TCP://localhost/x":            {URI: "NET.TCP://localhost/x", URL: "net.tcp://localhost/x", Protocol: NetTCP, Addr: "localhost:808"},
		"http://[::1]:8080/api":            {URI: "http://[::1]:8080/api", URL: "http://[::1]:8080/api", Protocol: HTTP, Addr: "[::1]:8080"},
		"https://example.test/":            {URI: "https://example.test/", URL: "https://example.test/", Protocol: HTTP, Addr: "example.test:443", TLS: true},
		"tcp://127.0.0.1:9":                {URI: "tcp://127.0.0.1:9", URL: "tcp://127.0.0.1:9", Protocol: TCP, Addr: "127.0.0.1:9"},
	} {
		got, err := ParseTarget(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, bad := range []string{"ftp://x:1/", "tcp://127.0.0.1", "tcp://127.0.0.1:9/path", "http://:80/", "net.tcp://%zz"} {
		_, err := ParseTarget(bad)
		assert.Error(t, err, bad)
	}
}

// Every socket a run opened is closed when Run returns, whatever the
// protocol and model.
func TestRunsLeaveNoDescriptorsBehind(t *testing.T) {
	echo := echoServer(t)
	srv := httptest.NewServer(refworker.Handler("w"))
	t.Cleanup(srv.Close)
	silent := testutil.ClosingServer(t, 200*time.Millisecond) // silent, then lets go
	runs := []Options{
		{Target: target(t, "net.tcp://"+echo+"/x"), Pacer: &Constant{Per: 500}, Count: 100},
		{Target: target(t, srv.URL+"/"), Pacer: &Constant{Per: 500}, Count: 100},
		{Target: target(t, "tcp://"+silent), Pacer: &Constant{Per: 500}, Count: 100, Hold: 10 * time.Millisecond},
		{Target: target(t, "net.tcp://"+silent+"/x"), Pacer: &Constant{Per: 500}, Count: 50, Timeout: 50 * time.Millisecond},
	}
	run(t, runs[0]) // warm up what the runtime opens once
	before := testutil.FDCount(t, os.Getpid())
	for _, o := range runs {
		run(t, o)
	}
	// The servers are in this process too: their ends close once ours have.
	settled := func() bool { return testutil.FDCount(t, os.Getpid()) == before }
	testutil.Eventually(t, 5*time.Second, settled, "descriptors did not return to the %d open before the runs", before)

	// hey's transport can keep a connection it dialed for a request that
	// another connection served first: it never reaches a trace hook, so
	// only the server's close (or the process's exit) ends it.
	run(t, Options{Target: target(t, srv.URL+"/"), Concurrency: 8, Count: 100})
	srv.CloseClientConnections()
	testutil.Eventually(t, 5*time.Second, settled, "descriptors did not return to the %d open before hey's run", before)
}

// The closed model's clients stop while sessions may still be starting:
// nothing may race, and a run cancelled before it starts sends nothing.
func TestClosedModelStopsCleanly(t *testing.T) {
	addr := testutil.ClosingServer(t, 0)
	for range 10 {
		r := run(t, Options{Target: target(t, "tcp://"+addr), Concurrency: 1, Duration: 20 * time.Millisecond})
		var ended int64
		for _, n := range r.Outcomes {
			ended += n
		}
		require.Equal(t, r.Attempts, ended, "every session ends in one outcome")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range []Options{
		{Target: target(t, "tcp://"+addr), Concurrency: 4, Count: 100},
		{Target: target(t, "tcp://"+addr), Pacer: &Constant{Per: 100}, Count: 100},
	} {
		r, err := Run(ctx, o)
		require.NoError(t, err)
		assert.Zero(t, r.Attempts)
		assert.Equal(t, "interrupted", r.Stopped)
	}
}

func TestRatesOfShortenedRuns(t *testing.T) {
	addr := testutil.ClosingServer(t, 0)
	// The count ends the run long before the duration would.
	r := run(t, Options{Target: target(t, "tcp://"+addr), Pacer: &Constant{Per: 100}, Count: 50, Duration: 10 * time.Second})
	assert.InDelta(t, 100, r.AchievedRate, 1)
	assert.InDelta(t, 0.5, float64(r.Window), 0.01)

	// An interrupted run's window ends at the interruption.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	r, err := Run(ctx, Options{Target: target(t, "tcp://"+addr), Pacer: &Ramp{From: 1, To: 3, Over: 10 * time.Second}, Duration: 10 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, int64(1), r.Attempts)
	assert.InDelta(t, 0.5, float64(r.Window), 0.2)
	assert.InDelta(t, 1.05, r.TargetRate, 0.02, "the ramp's mean rate over the first half second")

	// A rate so low its second arrival is centuries away ends on time.
	start := time.Now()
	r = run(t, Options{Target: target(t, "tcp://"+addr), Pacer: &Constant{Per: 1e-12}, Duration: 100 * time.Millisecond})
	assert.Equal(t, int64(1), r.Attempts)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestOptionsErrors(t *testing.T) {
	tg := target(t, "net.tcp://127.0.0.1:1/x")
	for _, o := range []Options{
		{Target: tg, Pacer: &Constant{Per: 1}, Count: 1, MessageSize: MaxNetTCPMessage + 1},
		{Target: tg, Pacer: &Constant{Per: 1}, Count: 1, Timeout: -time.Second},
		{Target: tg, Pacer: &Constant{Per: 1}, Count: 1, MaxInFlight: -1},
		{Target: target(t, "http://127.0.0.1:1/"), Pacer: &Constant{Per: 1}, Count: 1, Method: "G T"},
		{Target: target(t, "http://127.0.0.1:1/"), Concurrency: 3, Count: heyMaxResults},
		{Target: target(t, "http://127.0.0.1:1/"), Concurrency: 2, Count: math.MaxInt64},
	} {
		_, err := Run(context.Background(), o)
		var oe OptionsError
		assert.ErrorAs(t, err, &oe, "%+v", o)
	}

	// Closed-model HTTP runs on hey, which connects to the target's own
	// host: an Addr of another (--connect) is for the open model.
	elsewhere := target(t, "http://a.example/")
	elsewhere.Addr = "127.0.0.1:1"
	_, err := Run(context.Background(), Options{Target: elsewhere, Concurrency: 1, Count: 1})
	var oe OptionsError
	require.ErrorAs(t, err, &oe)
	assert.ErrorContains(t, err, "connecting to 127.0.0.1:1 instead of the target's a.example:80 (--connect) is for the open model (--rate)")
	o := Options{Target: elsewhere, Pacer: &Constant{Per: 1}, Count: 1}
	assert.NoError(t, o.defaults(), "the open model connects where Addr says")
	o = Options{Target: target(t, "http://127.0.0.1:1/"), Concurrency: 1, Count: 1}
	assert.NoError(t, o.defaults(), "hey connects to the target's own host")
}
