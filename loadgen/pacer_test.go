package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// arrivalsBefore draws arrivals from p until one is at or after end.
func arrivalsBefore(p Pacer, end time.Duration) []time.Duration {
	var out []time.Duration
	for t := p.Next(); t < end; t = p.Next() {
		out = append(out, t)
	}
	return out
}

func TestConstantSpacesArrivalsEvenly(t *testing.T) {
	a := arrivalsBefore(&Constant{Per: 200}, 10*time.Second)
	require.Len(t, a, 2000)
	assert.Equal(t, time.Duration(0), a[0])
	assert.Equal(t, 5*time.Millisecond, a[1])
	assert.Equal(t, 9995*time.Millisecond, a[1999])
}

func TestPoissonHasTheMeanRateAndIsRepeatable(t *testing.T) {
	a := arrivalsBefore(&Poisson{Per: 1000, Seed: 7}, 20*time.Second)
	// 20,000 expected; the standard deviation of the count is √20000 ≈ 141.
	assert.InDelta(t, 20000, len(a), 600)
	for i := 1; i < len(a); i++ {
		require.GreaterOrEqual(t, a[i], a[i-1])
	}
	b := arrivalsBefore(&Poisson{Per: 1000, Seed: 7}, 20*time.Second)
	assert.Equal(t, a, b, "the same seed gives the same arrivals")
	// Exponential gaps: about 1/e of them are longer than the mean (1 ms).
	long := 0
	for i := 1; i < len(a); i++ {
		if a[i]-a[i-1] > time.Millisecond {
			long++
		}
	}
	assert.InDelta(t, 0.368, float64(long)/float64(len(a)), 0.02)
}

func TestRampRaisesTheRateLinearly(t *testing.T) {
	r := &Ramp{From: 100, To: 300, Over: 10 * time.Second}
	a := arrivalsBefore(r, 10*time.Second)
	// The integral of the rate: (100+300)/2 · 10 s = 2000 arrivals.
	assert.InDelta(t, 2000, len(a), 1)
	perSecond := make([]int, 10)
	for _, x := range a {
		perSecond[int(x/time.Second)]++
	}
	assert.InDelta(t, 110, perSecond[0], 2) // mean rate over [0,1) s
	assert.InDelta(t, 290, perSecond[9], 2) // over [9,10) s
	// After the ramp the rate holds at To.
	more := arrivalsBefore(r, 11*time.Second)
	assert.InDelta(t, 300, len(more), 2)
	assert.InDelta(t, 200, r.Rate(5*time.Second), 0.001)
	assert.Equal(t, int64(len(a)), (&Ramp{From: 100, To: 300, Over: 10 * time.Second}).due(10*time.Second))
	assert.Equal(t, int64(2000+300), (&Ramp{From: 100, To: 300, Over: 10 * time.Second}).due(11*time.Second))
	assert.Equal(t, int64(2000), (&Constant{Per: 200}).due(10*time.Second))
	// A falling ramp works too.
	down := arrivalsBefore(&Ramp{From: 300, To: 100, Over: 10 * time.Second}, 10*time.Second)
	assert.InDelta(t, 2000, len(down), 1)
}

func TestNewPacerRefusesNonsense(t *testing.T) {
	for _, c := range []struct {
		arrival      string
		rate, rampTo float64
		over         time.Duration
		want         string
	}{
		{"constant", 0, 0, 0, "rate must be a positive"},
		{"constant", 2e6, 0, 0, "up to 1000000"},
		{"constant", -5, 0, 0, "rate must be a positive"},
		{"bursty", 10, 0, 0, `arrival "bursty" is not one of constant, poisson`},
		{"constant", 10, -1, time.Second, "ramp target must be a positive"},
		{"constant", 10, 20, 0, "a ramp needs a duration"},
		{"poisson", 10, 20, time.Second, "cannot be combined with poisson"},
	} {
		_, err := NewPacer(c.arrival, c.rate, c.rampTo, c.over, 1)
		require.Error(t, err, c)
		assert.Contains(t, err.Error(), c.want)
	}
	p, err := NewPacer("poisson", 10, 0, 0, 1)
	require.NoError(t, err)
	assert.Equal(t, "poisson 10/s", p.String())
}
