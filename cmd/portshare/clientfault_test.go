package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/loadgen"
	"github.com/portshare/portshare/sharer/daemon"
	"github.com/portshare/portshare/sharer/testutil"
)

// faultSection returns the client fault section key of res, failing the
// test if it is missing, and checks that its outcomes add up.
func faultSection(t *testing.T, res *loadgen.Result, key string) *loadgen.FaultResult {
	t.Helper()
	f := res.ClientFaults[key]
	require.NotNil(t, f, "client fault %q in %v", key, res.ClientFaults)
	var sum int64
	for _, n := range f.Outcomes {
		sum += n
	}
	require.Equal(t, f.Sessions, sum, "%s: every faulty session ends in one outcome: %v", key, f.Outcomes)
	return f
}

// endedBy asserts that every session of f ended in one of classes.
func endedBy(t *testing.T, f *loadgen.FaultResult, classes ...string) {
	t.Helper()
	var n int64
	for _, c := range classes {
		n += f.Outcomes[c]
	}
	assert.Equal(t, f.Sessions, n, "%s ended %v, not only %v; errors %v", f.Name, f.Outcomes, classes, f.Errors)
}

func ledger(st daemon.Status, outcome string) uint64 { return st.Ledger.Outcomes[outcome] }

// Silent clients hold a connection until receive_timeout; the normal
// clients beside them are served as before.
func TestClientFaultSilentThroughDaemon(t *testing.T) {
	e := startEnv(t, "receive_timeout: 1s\n")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	// The normal clients' usual latency: the same load without the fault.
	_, base := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--duration", "1s")
	require.EqualValues(t, 100, base.Outcomes[loadgen.OK])
	path := t.TempDir() + "/r.json"
	start := time.Now()
	code, out, errs := cli("load", "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--duration", "2s",
		"--client-fault", "silent", "--client-fault-ratio", "0.2", "--json", path)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	assert.Less(t, time.Since(start), 6*time.Second)
	doc, res := readResultFile(t, path)
	requireContractKeys(t, doc)
	assert.Contains(t, doc, "client_faults")
	assert.Contains(t, doc, "fault_events")

	assert.EqualValues(t, 200, res.Attempts, "the faulty sessions are attempts too")
	assert.InDelta(t, 100, res.AchievedRate, 1)
	assert.Equal(t, map[string]int64{loadgen.OK: 160}, res.Outcomes, "errors: %v", res.Errors)
	assert.EqualValues(t, 160, res.Latency.Count)
	assert.Less(t, res.Latency.P99, 3*base.Latency.P99+100_000,
		"the normal clients do not wait for the silent ones: p99 %dµs, %dµs without them", res.Latency.P99, base.Latency.P99)
	f := faultSection(t, res, "silent")
	assert.EqualValues(t, 40, f.Sessions, "exactly 0.2 of 200")
	assert.Equal(t, 0.2, f.Ratio)
	endedBy(t, f, loadgen.Reset, loadgen.EOF) // the daemon aborts at receive_timeout
	assert.InDelta(t, 1_000_000, f.Latency.P50, 150_000, "about receive_timeout")
	assert.InDelta(t, 1_000_000, f.Latency.Max, 250_000)
	require.Len(t, res.FaultEvents, 1)
	assert.Equal(t, "silent", res.FaultEvents[0].Fault)

	assert.Contains(t, out, "ok 160 (the 160 normal sessions)")
	assert.Contains(t, out, "client fault  silent (ratio 0.2): 40 sessions: ")

	st := e.balanced()
	assert.EqualValues(t, 40, ledger(st, "receive_timeout"), "one receive_timeout per silent client")
	assert.EqualValues(t, 260, ledger(st, "dispatched"), "160 and the baseline's 100")
	assert.EqualValues(t, 300, st.Ledger.Accepted)
	t.Logf("silent 0.2 of 200: %v, p50 %s; normal p99 %dµs (%dµs without silent clients); ledger %v", f.Outcomes,
		loadgen.FormatDuration(time.Duration(f.Latency.P50)*time.Microsecond), res.Latency.P99, base.Latency.P99, st.Ledger.Outcomes)
}

// Two faults in one run: an unknown route is told EndpointNotFound, a
// health-check style connect and close is an empty connection.
func TestClientFaultUnknownRouteAndConnectCloseThroughDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	_, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "40",
		"--client-fault", "unknown-route", "--client-fault-ratio", "0.25", "--client-fault", "connect-close", "--client-fault-ratio", "25%")
	assert.Equal(t, map[string]int64{loadgen.OK: 20}, res.Outcomes, "errors: %v", res.Errors)
	unknown := faultSection(t, res, "unknown-route")
	assert.Equal(t, map[string]int64{loadgen.FaultOutcome("EndpointNotFound"): 10}, unknown.Outcomes)
	closing := faultSection(t, res, "connect-close")
	assert.Equal(t, map[string]int64{loadgen.OK: 10}, closing.Outcomes)
	st := e.balanced()
	assert.EqualValues(t, 10, ledger(st, "no_route"))
	assert.EqualValues(t, 10, ledger(st, "protocol_failure"), "a connection closed before any byte")
	assert.EqualValues(t, 20, ledger(st, "dispatched"))
}

// A Via over MC-NMF's 2,048 bytes: reclaim says ViaTooLong, compat aborts
// as SMSvcHost does.
func TestClientFaultOversizeViaUnderBothPolicies(t *testing.T) {
	for _, policy := range []string{"reclaim", "compat"} {
		t.Run(policy, func(t *testing.T) {
			e := startEnv(t, "dispatch_failure_policy: "+policy+"\n")
			e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
			_, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "20",
				"--client-fault", "oversize-via", "--client-fault-ratio", "0.5")
			assert.Equal(t, map[string]int64{loadgen.OK: 10}, res.Outcomes, "errors: %v", res.Errors)
			f := faultSection(t, res, "oversize-via")
			assert.EqualValues(t, 10, f.Sessions)
			if policy == "reclaim" {
				assert.Equal(t, map[string]int64{loadgen.FaultOutcome("ViaTooLong"): 10}, f.Outcomes, "errors: %v", f.Errors)
			} else {
				endedBy(t, f, loadgen.Reset, loadgen.EOF)
			}
			st := e.balanced()
			assert.EqualValues(t, 10, ledger(st, "protocol_failure"))
			assert.EqualValues(t, 10, ledger(st, "dispatched"))
			t.Logf("%s: oversize-via %v", policy, f.Outcomes)
		})
	}
}

// receive_timeout covers the whole routing key: a preamble dribbled fast
// enough is served, a slower one is cut.
func TestClientFaultDribbleThroughDaemon(t *testing.T) {
	e := startEnv(t, "receive_timeout: 1s\n")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	target := e.route("net.tcp://127.0.0.1:%d/orders/")
	// The preamble is about 40 bytes: 5 ms a byte is 0.2 s, 100 ms a byte 4 s.
	_, fast := loadRun(t, "--target", target, "--rate", "100", "--count", "10", "--messages", "2",
		"--client-fault", "dribble:interval=5ms", "--client-fault-ratio", "0.5")
	assert.Equal(t, map[string]int64{loadgen.OK: 5}, fast.Outcomes)
	f := faultSection(t, fast, "dribble:interval=5ms")
	assert.Equal(t, map[string]int64{loadgen.OK: 5}, f.Outcomes, "errors: %v", f.Errors)
	assert.Greater(t, f.Latency.Min, int64(150_000), "one byte every 5 ms")
	st := e.balanced()
	assert.EqualValues(t, 10, ledger(st, "dispatched"))

	_, slow := loadRun(t, "--target", target, "--rate", "100", "--count", "10",
		"--client-fault", "dribble:interval=100ms", "--client-fault-ratio", "0.5")
	assert.Equal(t, map[string]int64{loadgen.OK: 5}, slow.Outcomes)
	f = faultSection(t, slow, "dribble:interval=100ms")
	endedBy(t, f, loadgen.Reset, loadgen.EOF)
	assert.InDelta(t, 1_000_000, f.Latency.P50, 200_000, "cut at receive_timeout")
	st = e.balanced()
	assert.EqualValues(t, 5, ledger(st, "receive_timeout"))
	assert.EqualValues(t, 15, ledger(st, "dispatched"))
	t.Logf("dribble 100ms/byte: %v; ledger %v", f.Outcomes, st.Ledger.Outcomes)
}

// Random bytes are never served; what they get depends on their first
// byte (net.tcp, TLS, HTTP or nothing the daemon knows).
func TestClientFaultGarbageThroughDaemon(t *testing.T) {
	e := startEnv(t, "receive_timeout: 1s\n")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	_, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "40",
		"--client-fault", "garbage:seed=3", "--client-fault-ratio", "0.5")
	assert.Equal(t, map[string]int64{loadgen.OK: 20}, res.Outcomes)
	f := faultSection(t, res, "garbage:seed=3")
	assert.EqualValues(t, 20, f.Sessions)
	assert.Zero(t, f.Outcomes[loadgen.OK], "garbage is never served: %v", f.Outcomes)
	st := e.balanced()
	assert.EqualValues(t, 20, ledger(st, "dispatched"))
	assert.EqualValues(t, 20, ledger(st, "protocol_failure")+ledger(st, "receive_timeout"), "%v", st.Ledger.Outcomes)
	t.Logf("garbage: %v; ledger %v", f.Outcomes, st.Ledger.Outcomes)
}

// Resets at each point of a session: the client gets as far as it meant
// to, the daemon's ledger still balances and its descriptors come back.
func TestClientFaultResetsThroughDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	_, res := loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "10")
	require.Equal(t, map[string]int64{loadgen.OK: 10}, res.Outcomes)
	e.balanced()
	base := testutil.FDCount(t, e.daemon.PID())

	_, res = loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "50",
		"--client-fault", "rst", "--client-fault-ratio", "0.2",
		"--client-fault", "rst:when=preamble", "--client-fault-ratio", "0.2",
		"--client-fault", "rst:when=ack", "--client-fault-ratio", "0.2")
	assert.Equal(t, map[string]int64{loadgen.OK: 20}, res.Outcomes, "errors: %v", res.Errors)
	for _, key := range []string{"rst", "rst:when=preamble", "rst:when=ack"} {
		f := faultSection(t, res, key)
		assert.Equal(t, map[string]int64{loadgen.OK: 10}, f.Outcomes, "%s: %v", key, f.Errors)
	}
	st := e.balanced()
	assert.EqualValues(t, 40, ledger(st, "dispatched"), "the normal sessions and those reset after their PreambleAck: %v", st.Ledger.Outcomes)
	assert.LessOrEqual(t, st.Ledger.Accepted, uint64(60))
	assert.GreaterOrEqual(t, st.Ledger.Accepted, uint64(50), "a connection reset before its accept may never be accepted")
	t.Logf("rst: ledger %+v", st.Ledger)
	testutil.Eventually(t, step, func() bool { return testutil.FDCount(t, e.daemon.PID()) <= base },
		"daemon descriptors back to %d, now %d", base, testutil.FDCount(t, e.daemon.PID()))

	// The worker lived through it.
	_, res = loadRun(t, "--target", e.route("net.tcp://127.0.0.1:%d/orders/"), "--rate", "100", "--count", "10")
	assert.Equal(t, map[string]int64{loadgen.OK: 10}, res.Outcomes)
}

func TestClientFaultsOverHTTPThroughDaemon(t *testing.T) {
	e := startEnv(t, "receive_timeout: 1s\n")
	e.worker("api", "http", e.route("http://+:%d/api/"))
	_, res := loadRun(t, "--target", e.route("http://127.0.0.1:%d/api/items"), "--rate", "100", "--count", "50",
		"--client-fault", "unknown-route", "--client-fault-ratio", "0.2",
		"--client-fault", "oversize-via", "--client-fault-ratio", "0.2",
		"--client-fault", "dribble:interval=2ms", "--client-fault-ratio", "0.2",
		"--client-fault", "silent", "--client-fault-ratio", "0.2")
	assert.Equal(t, map[string]int64{loadgen.OK: 10}, res.Outcomes, "errors: %v", res.Errors)
	assert.Equal(t, map[string]int64{loadgen.HTTPOutcome(404): 10}, faultSection(t, res, "unknown-route").Outcomes)
	assert.Equal(t, map[string]int64{loadgen.HTTPOutcome(431): 10}, faultSection(t, res, "oversize-via").Outcomes, "a 64 KiB head")
	assert.Equal(t, map[string]int64{loadgen.OK: 10}, faultSection(t, res, "dribble:interval=2ms").Outcomes)
	silent := faultSection(t, res, "silent")
	endedBy(t, silent, loadgen.Reset, loadgen.EOF)
	st := e.balanced()
	assert.EqualValues(t, 10, ledger(st, "no_route"))
	assert.EqualValues(t, 10, ledger(st, "receive_timeout"))
	assert.EqualValues(t, 10, ledger(st, "protocol_failure"), "431: header_too_large")
	// Faulty sessions never share the normal ones' keep-alive connections.
	assert.GreaterOrEqual(t, ledger(st, "dispatched"), uint64(11))
	t.Logf("http silent: %v; ledger %v", silent.Outcomes, st.Ledger.Outcomes)
}

func TestClientFaultUsageErrorsExit2WithOneLine(t *testing.T) {
	nt := []string{"load", "--target", "net.tcp://127.0.0.1:1/x/", "--rate", "10", "--duration", "1s"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{with(nt, "--client-fault", "stall"), []string{`client fault "stall": unknown name; client faults are connect-close, dribble, garbage, oversize-via, rst, silent, unknown-route`}},
		{with(nt, "--client-fault", "dribble:every=1s"), []string{"--client-fault: ", "interval"}},
		{with(nt, "--client-fault", "rst:when=later"), []string{"want one of connect, preamble, ack"}},
		{with(nt, "--client-fault", "silent", "--client-fault", "rst"), []string{"give a --client-fault-ratio for each of the 2 --client-fault specs"}},
		{with(nt, "--client-fault", "silent", "--client-fault-ratio", "0.1", "--client-fault-ratio", "0.2"), []string{"1 --client-fault specs but 2 --client-fault-ratio values"}},
		{with(nt, "--client-fault-ratio", "0.1"), []string{"give the fault too"}},
		{with(nt, "--client-fault", "silent", "--client-fault-ratio", "2"), []string{`--client-fault-ratio "2" (for silent): want a share above 0 and at most 1`}},
		{with(nt, "--client-fault", "silent", "--client-fault-ratio", "0.7", "--client-fault", "rst", "--client-fault-ratio", "0.7"), []string{"add up to 1.4"}},
		{[]string{"load", "--target", "tcp://127.0.0.1:1", "--rate", "10", "--count", "1", "--client-fault", "garbage"}, []string{"a tcp:// storm sends raw bytes already"}},
		{[]string{"load", "--target", "http://127.0.0.1:1/", "--concurrency", "2", "--count", "1", "--client-fault", "silent"}, []string{"client faults need the open model (--rate) for http targets"}},
	} {
		code, out, errs := cli(tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errs)
		for _, w := range tc.want {
			assert.Contains(t, errs, w, "%v", tc.args)
		}
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)
		assert.Empty(t, out, "%v: nothing runs", tc.args)
	}
	code, out, _ := cli("load", "--help")
	assert.Equal(t, 0, code)
	for _, name := range []string{"silent", "dribble", "garbage", "oversize-via", "unknown-route", "rst", "connect-close", "--client-fault-ratio"} {
		assert.Contains(t, out, name)
	}
}
