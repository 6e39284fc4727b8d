package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// A Pacer is an open-model arrival process: Next returns the intended send
// time of the next session, as an offset from the start of the run. Offsets
// never decrease. A Pacer is used by one goroutine.
type Pacer interface {
	Next() time.Duration
	// Rate is the arrival rate intended at offset t, in sessions per second.
	Rate(t time.Duration) float64
	String() string
}

// Constant sends Per sessions per second, evenly spaced.
type Constant struct {
	Per float64
	n   int64
}

func (c *Constant) Next() time.Duration {
	t := offset(float64(c.n) / c.Per)
	c.n++
	return t
}
func (c *Constant) Rate(time.Duration) float64 { return c.Per }
func (c *Constant) due(d time.Duration) int64  { return int64(math.Ceil(d.Seconds() * c.Per)) }
func (c *Constant) String() string             { return fmt.Sprintf("constant %g/s", c.Per) }

// Poisson sends Per sessions per second on average with exponentially
// distributed gaps, as independent clients do. Seed makes runs repeatable.
type Poisson struct {
	Per  float64
	Seed uint64
	rng  *rand.Rand
	t    time.Duration
}

func (p *Poisson) Next() time.Duration {
	if p.rng == nil {
		p.rng = rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))
		return 0 // the first arrival opens the run
	}
	p.t = offset(p.t.Seconds() + p.rng.ExpFloat64()/p.Per)
	return p.t
}
func (p *Poisson) Rate(time.Duration) float64 { return p.Per }
func (p *Poisson) String() string             { return fmt.Sprintf("poisson %g/s", p.Per) }

// Ramp raises (or lowers) the rate linearly from From to To over Over, then
// holds To. Arrivals are evenly spaced in the integral of the rate: the
// n-th is sent at the time t where From·t + (To−From)·t²/(2·Over) = n.
type Ramp struct {
	From, To float64
	Over     time.Duration
	n        int64
}

func (r *Ramp) Next() time.Duration {
	n := float64(r.n)
	r.n++
	over := r.Over.Seconds()
	slope := (r.To - r.From) / over
	rampArrivals := (r.From + r.To) / 2 * over
	var t float64
	switch {
	case n >= rampArrivals:
		t = over + (n-rampArrivals)/r.To
	case math.Abs(slope) < 1e-12:
		t = n / r.From
	default:
		// Solve slope/2·t² + From·t − n = 0 for the positive root.
		t = (-r.From + math.Sqrt(r.From*r.From+2*slope*n)) / slope
	}
	return offset(t)
}

// offset converts seconds to an offset, saturating where a Duration ends
// (290 years) so that tiny rates do not wrap around to negative times.
func offset(sec float64) time.Duration {
	if sec >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(sec * float64(time.Second))
}

// due is the number of arrivals before offset d: the integral of the rate.
func (r *Ramp) due(d time.Duration) int64 {
	t, over := d.Seconds(), r.Over.Seconds()
	if t <= over {
		return int64(math.Ceil(r.From*t + (r.To-r.From)*t*t/(2*over)))
	}
	return int64(math.Ceil((r.From+r.To)/2*over + (t-over)*r.To))
}

// meanRate is the mean intended rate over [0, d).
func (r *Ramp) meanRate(d time.Duration) float64 {
	if d <= 0 {
		return r.From
	}
	t, over := d.Seconds(), r.Over.Seconds()
	if t <= over {
		return r.From + (r.To-r.From)*t/(2*over)
	}
	return ((r.From+r.To)/2*over + (t-over)*r.To) / t
}

func (r *Ramp) Rate(t time.Duration) float64 {
	if t >= r.Over {
		return r.To
	}
	return r.From + (r.To-r.From)*t.Seconds()/r.Over.Seconds()
}
func (r *Ramp) String() string {
	return fmt.Sprintf("ramp %g/s to %g/s over %s", r.From, r.To, r.Over)
}

// MaxRate is the highest arrival rate a Pacer accepts: far beyond what one
// machine can send, and low enough that counting a run's arrivals is cheap.
const MaxRate = 1_000_000

// NewPacer makes the pacer for an arrival model: "constant" or "poisson"
// at rate, or, when rampTo > 0, a linear ramp from rate to rampTo over
// rampOver. Rates must be positive.
func NewPacer(arrival string, rate, rampTo float64, rampOver time.Duration, seed uint64) (Pacer, error) {
	if !(rate > 0) || rate > MaxRate {
		return nil, fmt.Errorf("rate must be a positive number of sessions per second up to %d, got %g", MaxRate, rate)
	}
	if rampTo != 0 {
		if !(rampTo > 0) || rampTo > MaxRate {
			return nil, fmt.Errorf("ramp target must be a positive rate up to %d, got %g", MaxRate, rampTo)
		}
		if rampOver <= 0 {
			return nil, fmt.Errorf("a ramp needs a duration to ramp over")
		}
		if arrival != "" && arrival != "constant" {
			return nil, fmt.Errorf("a ramp spaces arrivals evenly; it cannot be combined with %s arrivals", arrival)
		}
		return &Ramp{From: rate, To: rampTo, Over: rampOver}, nil
	}
	switch arrival {
	case "", "constant":
		return &Constant{Per: rate}, nil
	case "poisson":
		return &Poisson{Per: rate, Seed: seed}, nil
	}
	return nil, fmt.Errorf("arrival %q is not one of constant, poisson", arrival)
}
