package compare

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Known values: R's wilcox.test (two-sided, continuity correction, W is
// U of x) and SciPy's mannwhitneyu documentation.
func TestMannWhitneyUKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		x, y []float64
		u, p float64
	}{
		// SciPy: mannwhitneyu(males, females, method="exact").
		{"scipy exact", []float64{19, 22, 16, 29, 24}, []float64{20, 11, 17, 12}, 17, 0.1111111111111111},
		// R: wilcox.test(x, y, alternative = "greater") is W = 35,
		// p = 0.1272 (?wilcox.test); two-sided is twice that.
		{"R exact", []float64{0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46}, []float64{1.15, 0.88, 0.90, 0.74, 1.21}, 35, 0.2544},
		// 4 against 4, every x below every y: 2 of the 70 orderings are
		// as extreme.
		{"separated", []float64{1, 2, 3, 4}, []float64{5, 6, 7, 8}, 0, 2.0 / 70},
		{"separated reversed", []float64{5, 6, 7, 8}, []float64{1, 2, 3, 4}, 16, 2.0 / 70},
		// R, with ties (normal approximation): "W = 51.5, p-value = 0.5966".
		{"R ties", []float64{1, 5, 9, 24, 56, 21, 3, 7, 21, 4}, []float64{12, 15, 5, 9, 9, 14, 56, 22, 3, 7, 32, 5}, 51.5, 0.5966},
		// R: "W = 0, p-value = 0.001364" (ties within x only).
		{"R ties within x", []float64{1, 5, 9, 24, 56, 21, 3, 7, 21, 4}, []float64{1233, 4356, 987, 39999, 1111, 200000}, 0, 0.001364},
		// R: 15 against 15 with ties, "W = 97, p-value = 0.5335".
		{"R 15 by 15", []float64{99, 131, 118, 112, 128, 134, 103, 127, 121, 139, 110, 123, 100, 131, 108},
			[]float64{117, 125, 140, 109, 128, 136, 120, 107, 134, 122, 114, 101, 128, 110, 141}, 97, 0.5335},
		{"all tied", []float64{0, 0, 0, 0}, []float64{0, 0, 0, 0}, 8, 1},
		{"empty", nil, []float64{1, 2}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, p := MannWhitneyU(tc.x, tc.y)
			assert.Equal(t, tc.u, u)
			assert.InDelta(t, tc.p, p, 5e-5)
		})
	}
}

// SciPy's asymptotic p for its example: method="asymptotic" with the
// continuity correction is 0.11134688653314041.
func TestMannWhitneyUNormalApproximation(t *testing.T) {
	assert.InDelta(t, 0.11134688653314041, normalP(17, 5, 4, 0), 1e-12)
	assert.Equal(t, 1.0, normalP(10, 4, 5, 0), "U at its mean")
}

// The exact distribution agrees with counting every ordering.
func TestMannWhitneyUExactAgainstEnumeration(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		m, n := 1+r.IntN(6), 1+r.IntN(6)
		pool := r.Perm(m + n) // distinct values: no ties
		x, y := make([]float64, m), make([]float64, n)
		for i := range x {
			x[i] = float64(pool[i])
		}
		for j := range y {
			y[j] = float64(pool[m+j])
		}
		u, p := MannWhitneyU(x, y)
		// Every way of choosing which m of the m+n ranks are x's.
		var below, above, total float64
		for mask := 0; mask < 1<<(m+n); mask++ {
			if bits.OnesCount(uint(mask)) != m {
				continue
			}
			uu := 0.0
			seenY := 0
			for bit := 0; bit < m+n; bit++ {
				if mask&(1<<bit) != 0 {
					uu += float64(seenY) // this x is above every y below it
				} else {
					seenY++
				}
			}
			total++
			if uu <= u {
				below++
			}
			if uu >= u {
				above++
			}
		}
		assert.InDelta(t, math.Min(1, 2*math.Min(below, above)/total), p, 1e-12, "m=%d n=%d u=%g", m, n, u)
	}
}

// Large samples use the normal approximation and stay finite.
func TestMannWhitneyULarge(t *testing.T) {
	x, y := make([]float64, 60), make([]float64, 60)
	for i := range x {
		x[i], y[i] = float64(i), float64(i)+0.5
	}
	u, p := MannWhitneyU(x, y)
	// x[i] is above y[0] … y[i-1]: U = 0+1+…+59 = 1770, 30 below its mean
	// 1800; U's variance is 60·60/12·121 = 36300, so z = (30 − ½)/√36300
	// = 0.1548 and p = erfc(z/√2).
	assert.Equal(t, 1770.0, u)
	assert.InDelta(t, 0.87695152, p, 1e-8)
	counts := uCounts(49, 49)
	assert.False(t, math.IsInf(counts[49*49/2], 0))
}
