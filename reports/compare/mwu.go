package compare

import (
	"math"
	"sort"
)

// exactLimit bounds the sample sizes whose p-value comes from the exact
// distribution of U (as R's wilcox.test does); past it the normal
// approximation is as good and much cheaper.
const exactLimit = 50

// MannWhitneyU is the two-sided Mann–Whitney U (Wilcoxon rank-sum) test
// of whether x and y come from the same distribution. It returns U, the
// number of pairs (x[i], y[j]) with x[i] > y[j], a tie counting one half
// (R's W), and the p-value. Without ties and with both samples under 50
// values, p comes from the exact distribution of U; otherwise from the
// normal approximation with the tie and continuity corrections. p is 1
// when a sample is empty or every value is the same: nothing tells the
// samples apart.
func MannWhitneyU(x, y []float64) (u, p float64) {
	m, n := len(x), len(y)
	if m == 0 || n == 0 {
		return 0, 1
	}
	// Rank the pooled values, ties sharing the mean of their ranks.
	type obs struct {
		v     float64
		fromX bool
	}
	all := make([]obs, 0, m+n)
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].v < all[j].v })
	var rankSumX, tieTerm float64
	ties := false
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		t := float64(j - i)
		rank := float64(i+1+j) / 2 // mean of ranks i+1 … j
		for k := i; k < j; k++ {
			if all[k].fromX {
				rankSumX += rank
			}
		}
		if j-i > 1 {
			ties = true
			tieTerm += t*t*t - t
		}
		i = j
	}
	u = rankSumX - float64(m*(m+1))/2
	if !ties && m < exactLimit && n < exactLimit {
		return u, exactP(u, m, n)
	}
	return u, normalP(u, m, n, tieTerm)
}

// exactP is the two-sided p-value of U = u for samples of m and n values
// without ties: twice the smaller tail of U's distribution under the null
// hypothesis, where each of the C(m+n, m) orderings is equally likely.
func exactP(u float64, m, n int) float64 {
	counts := uCounts(m, n)
	k := int(math.Round(u))
	var total, below, above float64
	for i, c := range counts {
		total += c
		if i <= k {
			below += c
		}
		if i >= k {
			above += c
		}
	}
	return math.Min(1, 2*math.Min(below, above)/total)
}

// uCounts[k] is the number of orderings of m x-values and n y-values in
// which U = k. The largest value is either an x, above all n y-values
// (adding n to U), or a y (adding nothing), so
// c(m, n, k) = c(m−1, n, k−n) + c(m, n−1, k). Counts are float64: they
// outgrow int64 near m = n = 34, and only their ratios matter.
func uCounts(m, n int) []float64 {
	// prev[j] is c(i−1, j, ·), cur[j] is c(i, j, ·).
	prev := make([][]float64, n+1)
	for j := range prev {
		prev[j] = []float64{1} // c(0, j, ·): only U = 0
	}
	for i := 1; i <= m; i++ {
		cur := make([][]float64, n+1)
		cur[0] = []float64{1} // c(i, 0, ·): only U = 0
		for j := 1; j <= n; j++ {
			c := make([]float64, i*j+1)
			for k, v := range prev[j] { // x largest: U grows by j
				c[k+j] += v
			}
			for k, v := range cur[j-1] { // y largest
				c[k] += v
			}
			cur[j] = c
		}
		prev = cur
	}
	return prev[n]
}

// normalP is the two-sided p-value of U = u from the normal approximation,
// with U's variance reduced for ties (tieTerm is Σ t³−t over the groups of
// t tied values) and a continuity correction of one half.
func normalP(u float64, m, n int, tieTerm float64) float64 {
	fm, fn := float64(m), float64(n)
	big := fm + fn
	mean := fm * fn / 2
	variance := fm * fn / 12 * ((big + 1) - tieTerm/(big*(big-1)))
	if variance <= 0 {
		return 1 // every value tied
	}
	z := (math.Abs(u-mean) - 0.5) / math.Sqrt(variance)
	if z <= 0 {
		return 1
	}
	return math.Min(1, math.Erfc(z/math.Sqrt2))
}
