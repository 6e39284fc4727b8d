package faults

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Delay draws delays for the faults that take delay=, dist= and max=.
// Whatever the distribution, its mean is delay= (before the cap), so that
// dist= changes only the shape:
//
//	fixed    always delay
//	uniform  uniform on [0, 2 x delay)
//	exp      exponential (a Poisson process's gaps)
//	pareto   Pareto with shape= alpha (default 1.5): most delays short, a
//	         few very long, as a thread pool's queue under bursts gives
//
// exp and pareto are capped at max= (default 20 x delay) so that one draw
// cannot outlast a run. A Delay is safe for concurrent use; draws are
// repeatable for a given seed= and order of calls.
type Delay struct {
	mean  time.Duration
	dist  string
	max   time.Duration
	shape float64

	mu  sync.Mutex
	rng *rand.Rand
}

// newDelay returns the Delay that s describes (its delay, dist, max,
// shape and seed keys).
func newDelay(s Spec) *Delay {
	d := &Delay{mean: s.Duration("delay", 0), dist: s.Str("dist", "fixed"), shape: s.Float("shape", 1.5)}
	d.max = s.Duration("max", 0)
	if d.max == 0 && (d.dist == "exp" || d.dist == "pareto") {
		d.max = 20 * d.mean
	}
	d.rng = rand.New(rand.NewPCG(s.Seed, s.Seed^0x5851f42d4c957f2d))
	return d
}

// Next draws one delay.
func (d *Delay) Next() time.Duration {
	if d.dist == "fixed" {
		return d.capped(float64(d.mean))
	}
	d.mu.Lock()
	u := d.rng.Float64()
	d.mu.Unlock()
	m := float64(d.mean)
	switch d.dist {
	case "uniform":
		return d.capped(2 * m * u)
	case "exp":
		return d.capped(-m * math.Log1p(-u))
	default: // pareto: scale xm so that the mean xm·α/(α−1) is m
		a := d.shape
		xm := m * (a - 1) / a
		return d.capped(xm / math.Pow(1-u, 1/a))
	}
}

func (d *Delay) capped(ns float64) time.Duration {
	if d.max > 0 && ns > float64(d.max) {
		return d.max
	}
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// Coin draws "does the fault hit this connection" with probability s.P,
// repeatably for a seed.
type Coin struct {
	p   float64
	mu  sync.Mutex
	rng *rand.Rand
}

// newCoin returns the coin for spec s (its p and seed keys).
func newCoin(s Spec) *Coin {
	return &Coin{p: s.P, rng: rand.New(rand.NewPCG(s.Seed^0x9e3779b97f4a7c15, s.Seed))}
}

// Hit tosses the coin.
func (c *Coin) Hit() bool {
	if c.p >= 1 {
		return true
	}
	if c.p <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64() < c.p
}
