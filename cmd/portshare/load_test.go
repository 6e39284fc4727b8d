package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/testutil"
)

// loadRun runs `portshare load ARGS… --json FILE` in-process, requires exit
// 0, and returns the result file both as a generic document (for the
// contract's key names) and as a loadgen.Result.
func loadRun(t *testing.T, args ...string) (map[string]any, *loadgen.Result) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "result.json")
	start := time.Now()
	code, out, errs := cli(append(append([]string{"load"}, args...), "--json", path)...)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	require.Less(t, time.Since(start), 8*time.Second, "a short run stays short")
	assert.Contains(t, out, "outcomes", "the summary goes to stdout")
	return readResultFile(t, path)
}

func readResultFile(t *testing.T, path string) (map[string]any, *loadgen.Result) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc), "%s", raw)
	res, err := loadgen.ReadResult(strings.NewReader(string(raw)))
	require.NoError(t, err)
	return doc, res
}

// requireContractKeys checks the keys SPEC §6 promises in a result file.
func requireContractKeys(t *testing.T, doc map[string]any) {
	t.Helper()
	for _, k := range []string{"outcomes", "latency_us", "target_rate", "achieved_rate", "late_sends"} {
		require.Contains(t, doc, k)
	}
	require.IsType(t, map[string]any{}, doc["outcomes"])
	for class, n := range doc["outcomes"].(map[string]any) {
		assert.IsType(t, float64(0), n, "outcomes[%q] is a count", class)
	}
	lat, ok := doc["latency_us"].(map[string]any)
	require.True(t, ok, "latency_us is an object: %v", doc["latency_us"])
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		require.Contains(t, lat, k)
		assert.IsType(t, float64(0), lat[k], "latency_us.%s", k)
	}
	for _, k := range []string{"target_rate", "achieved_rate", "late_sends"} {
		assert.IsType(t, float64(0), doc[k], k)
	}
}

// onlyOutcome asserts that every one of the n sessions ended in class.
func onlyOutcome(t *testing.T, res *loadgen.Result, class string, n int64) {
	t.Helper()
	assert.Equal(t, map[string]int64{class: n}, res.Outcomes, "errors: %v", res.Errors)
	assert.Equal(t, n, res.Attempts)
}

func TestLoadNetTCPThroughDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	doc, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"),
		"--rate", "200", "--duration", "1s", "--messages", "2")

	requireContractKeys(t, doc)
	assert.EqualValues(t, 200, doc["attempts"])
	assert.EqualValues(t, 200, doc["target_rate"])
	assert.InDelta(t, 200, doc["achieved_rate"], 1)
	onlyOutcome(t, res, loadgen.OK, 200)
	assert.NotEmpty(t, doc["series"])
	var series int64
	for _, s := range res.Series {
		series += s.Attempts
	}
	assert.EqualValues(t, 200, series, "the time series counts every attempt")
	assert.Equal(t, "net.tcp", res.Protocol)
	assert.Equal(t, "open", res.Model)
	assert.Equal(t, 2, res.Messages)
	assert.EqualValues(t, 400, res.Phases[loadgen.PhaseMessage].Count, "two round trips per session")
	assert.EqualValues(t, 200, res.Latency.Count)
	assert.Positive(t, res.Latency.P50)
	assert.LessOrEqual(t, res.Latency.P50, res.Latency.P99)
	assert.LessOrEqual(t, res.Latency.P99, res.Latency.Max)
	assert.Empty(t, res.Stopped)

	st := e.balanced()
	assert.EqualValues(t, 200, st.Ledger.Outcomes["dispatched"], "each session is one hand-off")
}

func TestLoadNetTCPUnknownRouteIsEndpointNotFound(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	doc, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/billing/"), "--rate", "100", "--count", "30")
	requireContractKeys(t, doc)
	onlyOutcome(t, res, loadgen.FaultOutcome("EndpointNotFound"), 30)
	assert.Contains(t, doc["outcomes"], "fault:EndpointNotFound")
	st := e.balanced()
	assert.EqualValues(t, 30, st.Ledger.Outcomes["no_route"])
}

func TestLoadHTTPThroughDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("api", "http", e.route("http://+:%d/api/"))

	doc, res := loadRun(t, "--target", e.route("http://127.0.0.1:%d/api/items"), "--rate", "100", "--count", "50")
	requireContractKeys(t, doc)
	onlyOutcome(t, res, loadgen.OK, 50)
	assert.Equal(t, "portshare", res.Engine)

	doc, res = loadRun(t, "--target", e.route("http://127.0.0.1:%d/nowhere/"), "--rate", "100", "--count", "20")
	requireContractKeys(t, doc)
	onlyOutcome(t, res, loadgen.HTTPOutcome(404), 20)
	assert.Contains(t, doc["outcomes"], "http:404")

	e.balanced()
}

func TestLoadHTTPClosedModelThroughDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("api", "http", e.route("http://+:%d/api/"))
	const clients = 4
	doc, res := loadRun(t, "--target", e.route("http://127.0.0.1:%d/api/"), "--concurrency", strconv.Itoa(clients), "--count", "40")
	requireContractKeys(t, doc)
	assert.Equal(t, "hey", doc["engine"])
	assert.Equal(t, "closed", doc["model"])
	assert.EqualValues(t, clients, doc["concurrency"])
	onlyOutcome(t, res, loadgen.OK, 40)
	assert.EqualValues(t, 40, res.Latency.Count)
	assert.Empty(t, res.Notes, "40 splits evenly over %d clients", clients)
	// Keep-alive: about one connection (one hand-off) per client; net/http
	// sometimes dials again when a request beats the last one's connection
	// back to the idle pool.
	st := e.balanced()
	assert.GreaterOrEqual(t, st.Ledger.Outcomes["dispatched"], uint64(clients))
	assert.LessOrEqual(t, st.Ledger.Outcomes["dispatched"], uint64(40))
}

func TestLoadClosedPortIsRefused(t *testing.T) {
	port := testutil.FreePort(t) // nothing listens on it any more
	for _, target := range []string{"net.tcp://127.0.0.1:%d/x/", "http://127.0.0.1:%d/x/", "tcp://127.0.0.1:%d"} {
		target = strings.Replace(target, "%d", strconv.Itoa(port), 1)
		doc, res := loadRun(t, "--target", target, "--rate", "100", "--count", "10")
		requireContractKeys(t, doc)
		onlyOutcome(t, res, loadgen.Refused, 10)
	}
}

func TestLoadUsageErrorsExit2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--rate", "10", "--duration", "1s"}, "--target is required"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--concurrency", "2", "--duration", "1s"}, "give one of --rate R (open model) and --concurrency C"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--duration", "1s"}, "give one of --rate R (open model) and --concurrency C"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10"}, "give --duration D or --count N"},
		{[]string{"load", "--target", "ftp://127.0.0.1:21/x", "--rate", "10", "--duration", "1s"}, "the scheme must be net.tcp://, http://, https:// or tcp://"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--hold", "1s"}, "--send, --send-delay and --hold are for tcp:// connection storms"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "-5", "--duration", "1s"}, "rate must be a positive number"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--concurrency", "0", "--duration", "1s"}, "--concurrency must be at least 1"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--arrival", "bursty"}, `arrival "bursty"`},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "nope"}, "invalid argument"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--concurrency", "2", "--duration", "1s", "--arrival", "poisson"}, "--arrival shapes the open model's arrivals"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--timeout", "-1s"}, "the timeout cannot be negative"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--message-size", "100000"}, "net.tcp messages are limited to 61440 bytes"},
		{[]string{"load", "--target", "http://127.0.0.1:1/", "--rate", "10", "--duration", "1s", "--method", "G T"}, `method "G T" is not an HTTP method`},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--json", "/nonexistent/dir/r.json"}, "--json: open /nonexistent/dir/"},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--client-fault", "silent", "--client-fault-ratio", "0"}, `client fault "silent": the ratio must be above 0 and at most 1, got 0`},
		{[]string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s", "--client-fault", "silent", "--client-fault-ratio", "1.5"}, `--client-fault-ratio "1.5" (for silent): want a share above 0 and at most 1`},
	} {
		start := time.Now()
		code, out, errs := cli(tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "%v", tc.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)
		assert.True(t, strings.HasPrefix(errs, "portshare: "), "%q", errs)
		assert.Empty(t, out, "%v: nothing runs", tc.args)
		assert.Less(t, time.Since(start), time.Second, "%v: nothing is sent", tc.args)
	}
}

func TestLoadCtrlCStopsAndStillWritesResults(t *testing.T) {
	var accepted atomic.Int64
	first := make(chan struct{}, 1)
	addr := testutil.Serve(t, func(_ net.Conn, done <-chan struct{}) { // accepts, never answers
		accepted.Add(1)
		select {
		case first <- struct{}{}:
		default:
		}
		<-done
	})
	path := filepath.Join(t.TempDir(), "result.json")
	p := testutil.Start(t, nil, "load", "--target", "net.tcp://"+addr+"/orders/",
		"--rate", "50", "--duration", "30s", "--json", path)
	select {
	case <-first: // the run has started, so its signal handler is in place
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection from the load generator; output:\n%s", p.Output())
	}
	time.Sleep(time.Second)
	p.Signal(syscall.SIGINT)
	sent := time.Now()
	require.Equal(t, 0, p.Wait(5*time.Second), "exit code after Ctrl-C (-1: still running); output:\n%s", p.Output())
	assert.Less(t, time.Since(sent), 3*time.Second, "stops within the 1 s grace and a little")
	assert.Contains(t, p.Output(), "stopped")

	doc, res := readResultFile(t, path)
	requireContractKeys(t, doc)
	assert.Equal(t, "interrupted", doc["stopped"])
	require.Contains(t, doc["outcomes"], "aborted")
	assert.Equal(t, res.Attempts, res.Outcomes[loadgen.Aborted], "every session hung, so every one was aborted: %v", res.Outcomes)
	assert.Greater(t, res.Attempts, int64(40), "about 50/s for over a second")
	assert.Less(t, res.Attempts, int64(200), "sending stopped at the signal")
	testutil.Eventually(t, step, func() bool { return accepted.Load() == res.Attempts }, "one connection per session: %d attempts", res.Attempts)
	assert.Less(t, float64(res.Window), 10.0, "the send window ends at the signal, not at --duration")
}

func TestLoadProgressLineRedrawsOneLine(t *testing.T) {
	var buf strings.Builder
	p := &progressLine{w: &buf}
	p.show(loadgen.Snapshot{Elapsed: 3 * time.Second, Rate: 199.5, OK: 597, Errors: 2, Late: 1, InFlight: 4, P99: 1500 * time.Microsecond})
	p.show(loadgen.Snapshot{Elapsed: 4 * time.Second, Rate: 200, OK: 797, Errors: 2, InFlight: 3, P99: 900 * time.Microsecond})
	p.end()
	out := buf.String()
	assert.NotContains(t, out, "\n", "one line, redrawn in place")
	assert.Contains(t, out, "\r\033[K   3s    199.5/s  ok 597  errors 2  late 1  in flight 4  p99 1.5ms")
	assert.True(t, strings.HasSuffix(out, "\r\033[K"), "the line is cleared before the summary")

	var quiet *progressLine // not a terminal: no progress at all
	quiet.end()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	assert.False(t, isTerminal(w), "a pipe is not a terminal")
}

// A run refused for its options leaves an earlier result file as it was.
func TestLoadBadOptionsKeepTheOldResultFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"old":true}`), 0o644))
	code, _, errs := cli("load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--count", "1", "--message-size", "100000", "--json", path)
	require.Equal(t, 2, code, errs)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, `{"old":true}`, string(got))
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left behind")
}

// --connect keeps the target's host in the Via and the TLS server name,
// so a load can reach routes keyed by a name that does not resolve: an
// exact-host net.tcp route and an SNI route on one shared port.
func TestLoadConnectKeepsTheTargetsHost(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://orders.example:%d/orders/"))
	e.worker("secure", "https", e.route("tls://secure.example:%d/"))
	_, res := loadRun(t, "--target", e.route("net.tcp://orders.example:%d/orders/"), "--connect", e.addr(), "--rate", "20", "--count", "10")
	assert.Equal(t, map[string]int64{"ok": 10}, res.Outcomes, "the Via named orders.example")
	_, res = loadRun(t, "--target", e.route("https://secure.example:%d/"), "--connect", e.addr(), "--rate", "20", "--count", "10")
	assert.Equal(t, map[string]int64{"ok": 10}, res.Outcomes, "the ClientHello named secure.example")
	_, res = loadRun(t, "--target", e.route("net.tcp://other.example:%d/orders/"), "--connect", e.addr(), "--rate", "20", "--count", "5")
	assert.Equal(t, map[string]int64{"fault:EndpointNotFound": 5}, res.Outcomes, "another name routes nowhere")
	e.balanced()

	code, _, stderr := cli("load", "--target", "http://a.example:80/", "--connect", "nohost", "--rate", "1", "--count", "1")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--connect \"nohost\": want HOST:PORT")
	code, _, stderr = cli("load", "--target", "http://a.example:80/", "--connect", "127.0.0.1:80", "--concurrency", "1", "--count", "1")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "closed-model http")
}
