package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpecs(t *testing.T) {
	s, err := Parse(Worker, "slow-accept:delay=200ms,dist=exp")
	require.NoError(t, err)
	assert.Equal(t, "slow-accept", s.Name)
	assert.Equal(t, Worker, s.Kind)
	assert.Equal(t, 200*time.Millisecond, s.Duration("delay", 0))
	assert.Equal(t, "exp", s.Str("dist", "fixed"))
	assert.Equal(t, 1.0, s.P)
	assert.Equal(t, "slow-accept:delay=200ms,dist=exp", s.String())

	s, err = Parse(Worker, "stall:at=2s,for=3s")
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, s.At)
	assert.Equal(t, 3*time.Second, s.For)
	assert.False(t, s.Active(time.Second))
	assert.True(t, s.Active(2*time.Second))
	assert.True(t, s.Active(4999*time.Millisecond))
	assert.False(t, s.Active(5*time.Second))
	end, ok := s.End()
	assert.True(t, ok)
	assert.Equal(t, 5*time.Second, end)

	s, err = Parse(Worker, "hang:at=1s")
	require.NoError(t, err)
	assert.True(t, s.Active(time.Hour), "no for=: to the end")
	_, ok = s.End()
	assert.False(t, ok)

	s, err = Parse(Worker, "refuse:p=0.25,seed=7")
	require.NoError(t, err)
	assert.Equal(t, 0.25, s.P)
	assert.EqualValues(t, 7, s.Seed)

	s, err = Parse(Network, "netem:delay=50ms,loss=1.5%")
	require.NoError(t, err)
	assert.Equal(t, 1.5, s.Percent("loss", 0))
	s, err = Parse(Network, "netem:delay=50ms,loss=0.02")
	require.NoError(t, err)
	assert.InDelta(t, 2.0, s.Percent("loss", 0), 1e-9, "a fraction is read as a share")
	assert.Equal(t, 7.0, MustParse(Network, "netem:loss=7%").Percent("loss", 0), "a percentage as written, for tc")

	for _, k := range []Kind{Worker, Client, Daemon, Network} {
		for _, n := range Names(k) {
			if n == "slow-accept" || n == "slow-message" || n == "stall" || n == "netem" {
				continue // need keys
			}
			_, err := Parse(k, n)
			assert.NoError(t, err, n)
		}
	}
}

func TestParseRefusesBadSpecsListingWhatIsValid(t *testing.T) {
	for _, tc := range []struct {
		kind      Kind
		spec      string
		wantParts []string
	}{
		{Worker, "sloww-accept", []string{`unknown name`, "crash, hang, refuse, slow-accept, slow-message, stall"}},
		{Worker, "silent", []string{"worker faults are"}},
		{Client, "pause", []string{"client faults are", "connect-close", "dribble"}},
		{Worker, "slow-accept:delay=1s,speed=2", []string{`"speed=2"`, "at, for, p, seed, delay, dist, max, shape"}},
		{Worker, "slow-accept:delay", []string{"not key=value"}},
		{Worker, "slow-accept:delay=fast", []string{"want a duration"}},
		{Worker, "slow-accept:delay=-1s", []string{"want a duration"}},
		{Worker, "slow-accept:delay=1s,dist=normal", []string{"want one of fixed, uniform, exp, pareto"}},
		{Worker, "slow-accept:delay=1s,p=1.5", []string{"probability from 0 to 1"}},
		{Worker, "slow-accept:delay=1s,dist=pareto,shape=1", []string{"shape must be above 1"}},
		{Worker, "slow-accept", []string{"give delay="}},
		{Worker, "slow-accept:delay=1s,delay=2s", []string{"given twice"}},
		{Worker, "stall:at=1s", []string{"give for="}},
		{Worker, "stall:for=0s", []string{"above 0"}},
		{Worker, "crash:after=0", []string{"at least 1"}},
		{Worker, "crash:at=1s,after=3", []string{"not both"}},
		{Client, "oversize-via:len=100", []string{"above 2048"}},
		{Worker, "crash:after=x", []string{"whole number"}},
		{Client, "rst:when=later", []string{"connect, preamble, ack"}},
		{Network, "netem:loss=200%", []string{"share from 0 to 1"}},
		{Network, "netem:jitter=5ms,loss=1%", []string{"need delay"}},
		{Network, "netem", []string{"delay="}},
	} {
		_, err := Parse(tc.kind, tc.spec)
		require.Error(t, err, tc.spec)
		for _, p := range tc.wantParts {
			assert.Contains(t, err.Error(), p, tc.spec)
		}
		assert.NotContains(t, err.Error(), "\n", "one line")
	}
}

func TestHelpListsEveryFaultOfAKind(t *testing.T) {
	h := Help(Worker)
	for _, n := range []string{"slow-accept", "stall", "hang", "crash", "slow-message", "refuse"} {
		assert.Contains(t, h, "  "+n+": ")
	}
	assert.NotContains(t, h, "silent")
	assert.Equal(t, []string{"connect-close", "dribble", "garbage", "oversize-via", "rst", "silent", "unknown-route"}, Names(Client))
	assert.Equal(t, []string{"nofile", "pause", "restart"}, Names(Daemon))
	assert.Equal(t, []string{"netem"}, Names(Network))
}

func TestDelayMeansAndCaps(t *testing.T) {
	for _, dist := range []string{"fixed", "uniform", "exp", "pareto"} {
		d := newDelay(MustParse(Worker, "slow-accept:delay=100ms,dist="+dist+",max=10s"))
		const n = 20000
		var sum time.Duration
		var most time.Duration
		for range n {
			v := d.Next()
			require.GreaterOrEqual(t, v, time.Duration(0))
			sum += v
			most = max(most, v)
		}
		mean := sum / n
		tol := 0.05
		if dist == "pareto" {
			tol = 0.25 // heavy tail: the sample mean converges slowly
		}
		assert.InEpsilon(t, float64(100*time.Millisecond), float64(mean), tol, "%s mean %v", dist, mean)
		assert.LessOrEqual(t, most, 10*time.Second)
		if dist == "exp" || dist == "pareto" {
			assert.Greater(t, most, 300*time.Millisecond, "%s has a tail", dist)
		}
	}
	capped := newDelay(MustParse(Worker, "slow-accept:delay=1s,dist=pareto"))
	for range 10000 {
		require.LessOrEqual(t, capped.Next(), 20*time.Second, "default cap 20 x delay")
	}
	a, b := newDelay(MustParse(Worker, "slow-accept:delay=1s,dist=exp,seed=3")), newDelay(MustParse(Worker, "slow-accept:delay=1s,dist=exp,seed=3"))
	for range 100 {
		require.Equal(t, a.Next(), b.Next(), "same seed, same draws")
	}
}

func TestCoinHitsItsShare(t *testing.T) {
	c := newCoin(MustParse(Worker, "refuse:p=0.3"))
	hits := 0
	for range 10000 {
		if c.Hit() {
			hits++
		}
	}
	assert.InDelta(t, 3000, hits, 200)
	assert.True(t, newCoin(MustParse(Worker, "refuse")).Hit())
	assert.False(t, newCoin(MustParse(Worker, "refuse:p=0")).Hit())
}

func TestEventsRoundTripAndTolerateATornLastLine(t *testing.T) {
	var b strings.Builder
	l := NewLog("w1", &b, nil)
	s := MustParse(Worker, "stall:at=1s,for=2s")
	l.Add(s, Start, "")
	l.Add(s, End, "done")
	require.Len(t, l.Events(), 2)
	got, err := ReadEvents(strings.NewReader(b.String() + `{"time":"2026-`))
	require.NoError(t, err, "a process killed mid-write leaves a partial last line")
	require.Len(t, got, 2)
	assert.Equal(t, "stall:at=1s,for=2s", got[0].Fault)
	assert.Equal(t, Start, got[0].Phase)
	assert.Equal(t, End, got[1].Phase)
	assert.Equal(t, "w1", got[1].Source)
	assert.Equal(t, "done", got[1].Detail)
	_, err = ReadEvents(strings.NewReader("garbage\n" + b.String()))
	assert.ErrorContains(t, err, "line 1")
	var nilLog *Log
	nilLog.Add(s, Start, "") // a nil log drops events
	assert.Nil(t, nilLog.Events())
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"slow-accept:delay=200ms,dist=exp", "stall:at=2s,for=3s", "netem:delay=50ms,loss=1%", "rst:when=ack", "crash:after=3,inflight=1s", "x:y=z,,", ":", "pause:at=1s,for=-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, k := range []Kind{Worker, Client, Daemon, Network} {
			s, err := Parse(k, text)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("multi-line error %q", err)
				}
				continue
			}
			if s.At < 0 || s.For < 0 || s.P < 0 || s.P > 1 {
				t.Fatalf("%q parsed to bad values %+v", text, s)
			}
			if s.Has("delay") {
				d := newDelay(s)
				for range 3 {
					if d.Next() < 0 {
						t.Fatalf("%q: negative delay", text)
					}
				}
			}
		}
	})
}

// WithSeed gives a spec draws of its own unless it names a seed, and
// leaves faults that draw nothing alone.
func TestWithSeed(t *testing.T) {
	s := MustParse(Worker, "slow-accept:delay=40ms,dist=exp").WithSeed(7)
	assert.Equal(t, "slow-accept:delay=40ms,dist=exp,seed=7", s.String())
	assert.Equal(t, uint64(7), s.Seed)
	assert.Equal(t, "refuse:seed=3", MustParse(Worker, "refuse").WithSeed(3).String())
	assert.Equal(t, "slow-accept:delay=1s,seed=1", MustParse(Worker, "slow-accept:delay=1s,seed=1").WithSeed(9).String(), "a seed written stays")
	assert.Equal(t, "stall:at=1s,for=1s", MustParse(Worker, "stall:at=1s,for=1s").WithSeed(9).String(), "stall draws nothing")
	assert.Equal(t, "garbage:seed=2", MustParse(Client, "garbage").WithSeed(2).String())
}
