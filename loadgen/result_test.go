package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
)

// fixture records n sessions of latency base, base+1µs, … ending in the
// first seconds of a run, and returns the result.
func fixture(n int, base time.Duration, outcome string) *Result {
	start := time.Unix(1_700_000_000, 0)
	rec := newRecorder(start)
	for i := range n {
		at := start.Add(time.Duration(i) * 10 * time.Millisecond)
		rec.Started(at, i%10 == 0)
		d := base + time.Duration(i)*time.Microsecond
		rec.Finished(at.Add(d), d, outcome, &Phases{Connect: 100 * time.Microsecond, Handshake: 200 * time.Microsecond}, nil)
	}
	r := rec.result(start.Add(time.Duration(n) * 10 * time.Millisecond))
	r.Version, r.Target, r.Protocol, r.Model, r.Engine, r.Started = FormatVersion, "net.tcp://127.0.0.1:1/x", NetTCP, "open", "portshare", start
	return r
}

func TestResultFileRoundTrip(t *testing.T) {
	r := fixture(250, time.Millisecond, OK)
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	for _, key := range []string{`"outcomes"`, `"latency_us"`, `"p50"`, `"p90"`, `"p99"`, `"p999"`, `"max"`, `"target_rate"`, `"achieved_rate"`, `"late_sends"`, `"series"`, `"hdr"`} {
		assert.Contains(t, buf.String(), key)
	}
	back, err := ReadResult(&buf)
	require.NoError(t, err)
	assert.Equal(t, r.Outcomes, back.Outcomes)
	assert.Equal(t, r.Latency.P99, back.Latency.P99)
	assert.Equal(t, r.Series, back.Series)
	h, err := back.Phases[PhaseSession].Histogram()
	require.NoError(t, err)
	orig, _ := r.Phases[PhaseSession].Histogram()
	assert.True(t, orig.Equals(h), "the histogram survives the file exactly")
	assert.Equal(t, int64(25), back.LateSends)
	require.Len(t, back.Series, 3)
	assert.Equal(t, int64(100), back.Series[0].Attempts)
	assert.Equal(t, int64(10), back.Series[0].Late)
	assert.NotZero(t, back.Series[0].P99us)
}

func TestMergeAddsCountsAndHistograms(t *testing.T) {
	a := fixture(100, time.Millisecond, OK)
	b := fixture(100, 10*time.Millisecond, "fault:ServerTooBusy")
	m, err := Merge(a, b)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{OK: 100, "fault:ServerTooBusy": 100}, m.Outcomes)
	assert.Equal(t, int64(200), m.Phases[PhaseSession].Count)
	assert.Equal(t, int64(200), m.Phases[PhaseConnect].Count)
	assert.Equal(t, int64(100), m.Phases[PhaseSessionOK].Count)
	assert.InDelta(t, 10_000, m.Latency.P90, 200, "the slower half decides p90")
	assert.Empty(t, m.Series, "a series belongs to one run")
	assert.InDelta(t, a.AchievedRate, m.AchievedRate, 0.001, "rates are the runs' mean")
	assert.Equal(t, a.Attempts+b.Attempts, m.Attempts)
	assert.Empty(t, m.Latency.Hist, "latency_us is a summary; the histogram is in phases")

	c := fixture(1, time.Millisecond, OK)
	c.Protocol = HTTP
	_, err = Merge(a, c)
	assert.ErrorContains(t, err, "do not mix")
	d := fixture(1, time.Millisecond, OK)
	d.Concurrency = 8
	_, err = Merge(a, d)
	assert.ErrorContains(t, err, "do not mix")
	_, err = Merge()
	assert.Error(t, err)
}

// The kernel counters survive the file, add up over runs that all have
// them, and are left out of a pool some runs lack them in.
func TestKernelCountersInFilesAndMerge(t *testing.T) {
	a, b, c := fixture(10, time.Millisecond, OK), fixture(10, time.Millisecond, OK), fixture(10, time.Millisecond, OK)
	a.TCPExt = faults.TCPExt{"ListenOverflows": 3, "ListenDrops": 3}
	b.TCPExt = faults.TCPExt{"ListenOverflows": 2, "ListenDrops": 4}
	var buf bytes.Buffer
	require.NoError(t, a.WriteJSON(&buf))
	assert.Contains(t, buf.String(), `"tcp_ext"`)
	back, err := ReadResult(&buf)
	require.NoError(t, err)
	assert.Equal(t, a.TCPExt, back.TCPExt)

	m, err := Merge(a, b)
	require.NoError(t, err)
	assert.Equal(t, faults.TCPExt{"ListenOverflows": 5, "ListenDrops": 7}, m.TCPExt)
	m, err = Merge(a, b, c)
	require.NoError(t, err)
	assert.Nil(t, m.TCPExt, "a sum over two of three runs is not the pool's")
	assert.Contains(t, m.Notes, "tcp_ext left out: 1 of 3 runs have none")

	buf.Reset()
	require.NoError(t, a.WriteJSON(&buf))
	bad := strings.Replace(buf.String(), `"ListenDrops": 3`, `"ListenDrops": -3`, 1)
	require.NotEqual(t, buf.String(), bad)
	_, err = ReadResult(strings.NewReader(bad))
	assert.ErrorContains(t, err, "counters only grow")
}

func TestReadResultRefusesDamagedFiles(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, fixture(10, time.Millisecond, OK).WriteJSON(&buf))
	good := buf.String()
	for name, doc := range map[string]string{
		"not json":          "{",
		"other version":     strings.Replace(good, `"version": 1`, `"version": 99`, 1),
		"short histogram":   strings.Replace(good, `"hdr": "`, `"hdr": "HISTFAAAA`, 1),
		"not base64":        strings.Replace(good, `"hdr": "`, `"hdr": "%%%`, 1),
		"null phase":        strings.Replace(good, `"connect": {`, `"connect": null, "x": {`, 1),
		"garbage histogram": strings.Replace(good, `"hdr": "`, `"hdr": "HISTFAAAACl4nJNpmSzMwMDAzgABTBDKT4GBgRMAAAD//wMA8LkOhwAAAAAAAAAAAAAAAAAAAA==`, 1),
	} {
		_, err := ReadResult(strings.NewReader(doc))
		assert.Error(t, err, name)
	}
}

func FuzzReadResult(f *testing.F) {
	var buf bytes.Buffer
	fixture(20, time.Millisecond, OK).WriteJSON(&buf)
	f.Add(buf.String())
	buf.Reset()
	faultFixture(5, time.Millisecond, Reset).WriteJSON(&buf)
	f.Add(buf.String())
	f.Add(`{"version":1,"phases":{"session":{"hdr":"HISTFAAAABx4nJNpmSzMwMDAxQABzFCaEUzOmQ0ABRkBFQ=="}}}`)
	f.Add(`{"version":1,"phases":{"x":{"hdr":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		r, err := ReadResult(strings.NewReader(doc))
		if err != nil {
			return
		}
		var out bytes.Buffer
		require.NoError(t, WriteSummary(&out, r))
		if _, err := Merge(r, r); err != nil {
			t.Fatalf("a file that reads must merge with itself: %v", err)
		}
	})
}

func TestSummaryNamesEveryClassAndPhase(t *testing.T) {
	r := fixture(30, time.Millisecond, OK)
	r.Outcomes["refused"] = 3
	r.Errors = map[string]int64{"dial tcp: connection refused": 3}
	var out bytes.Buffer
	require.NoError(t, WriteSummary(&out, r))
	s := out.String()
	for _, want := range []string{"net.tcp://127.0.0.1:1/x", "ok 30, refused 3", "connection refused", "connect", "handshake", "session", "p99.9"} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, "87µs", FormatDuration(87*time.Microsecond))
	assert.Equal(t, "1.23ms", FormatDuration(1234*time.Microsecond))
	assert.Equal(t, "2.5s", FormatDuration(2500*time.Millisecond))
}

// BenchmarkRecorderFinished shows that recording a session costs no
// allocation: memory stays flat however long a run lasts.
//
//	go test -run '^$' -bench recorder -benchmem ./loadgen
func BenchmarkRecorderFinished(b *testing.B) {
	start := time.Now()
	rec := newRecorder(start)
	ph := &Phases{Connect: 100 * time.Microsecond, Handshake: 200 * time.Microsecond, rec: rec}
	b.ReportAllocs()
	for i := range b.N {
		at := start.Add(time.Duration(i) * time.Microsecond)
		rec.Started(at, false)
		ph.Message(50 * time.Microsecond)
		rec.Finished(at, 300*time.Microsecond, OK, ph, nil)
	}
}

func TestErrorSamplesDropLocalAddresses(t *testing.T) {
	rec := newRecorder(time.Now())
	for port := range 50 {
		err := fmt.Errorf("read tcp 127.0.0.1:%d->127.0.0.1:8808: read: connection reset by peer", 40000+port)
		rec.Finished(time.Now(), time.Millisecond, Reset, nil, err)
	}
	rec.Finished(time.Now(), time.Millisecond, Aborted, nil, errors.New("i/o timeout"))
	r := rec.result(time.Now())
	assert.Equal(t, map[string]int64{"read tcp 127.0.0.1:8808: read: connection reset by peer": 50}, r.Errors)
}

// A session recorded after its second's percentiles were computed counts in
// the second but does not replace its percentiles.
func TestStragglersKeepTheirSecondsPercentiles(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	rec := newRecorder(start)
	for i := range 100 {
		rec.Finished(start.Add(time.Duration(i)*time.Millisecond), 100*time.Millisecond, OK, nil, nil)
	}
	rec.Finished(start.Add(5*time.Second), time.Millisecond, OK, nil, nil) // closes second 0
	rec.Finished(start.Add(500*time.Millisecond), 50*time.Microsecond, OK, nil, nil)
	r := rec.result(start.Add(6 * time.Second))
	assert.Equal(t, int64(101), r.Series[0].OK)
	assert.InDelta(t, 100_000, r.Series[0].P50us, 1000)
	assert.InDelta(t, 1000, r.Series[5].P50us, 10)
}

// hey's output is read line by line whatever sizes it is written in.
func TestHeyParserReadsLinesAcrossWrites(t *testing.T) {
	out := "r 0.001 0.0002 0.0003 200 0.5\nr 0.002 0 0.0004 404 0.6\ne 3 \"Get \\\"http://x/\\\": EOF\"\n"
	for _, size := range []int{1, 2, 7, len(out)} {
		rec := newRecorder(heyEpoch)
		p := &heyParser{rec: rec}
		for b := []byte(out); len(b) > 0; {
			n := min(size, len(b))
			p.Write(b[:n])
			b = b[n:]
		}
		require.NoError(t, p.err, "writes of %d bytes", size)
		r := rec.result(heyEpoch.Add(time.Second))
		assert.Equal(t, map[string]int64{OK: 1, "http:404": 1, EOF: 3}, r.Outcomes, "writes of %d bytes", size)
		assert.Equal(t, int64(3), p.untimed)
		assert.Equal(t, int64(1), r.Phases[PhaseConnect].Count, "a reused connection has no connect time")
	}
}
