package loadgen

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// sleeper waits until an arrival's intended time precisely. Go's timers
// wake up to a millisecond late when the process is otherwise idle (the
// runtime's poller sleeps in whole milliseconds), which would make most
// sends late by more than the latencies being measured. So the last few
// milliseconds of each wait are slept in nanosleep(2) with the thread's
// timer slack at 1 ns: typically 40–60 µs late instead of ~1 ms, without
// spinning. The goroutine is locked to its thread only around that sleep:
// a locked goroutine is slow to wake from a channel, which the pacer does
// on every arrival once the in-flight cap is full.
type sleeper struct {
	timer *time.Timer
}

// coarseAbove is the wait beyond which a Go timer (which also watches ctx)
// takes the first part of the wait.
const coarseAbove = 5 * time.Millisecond

func newSleeper() *sleeper { return &sleeper{timer: time.NewTimer(time.Hour)} }

// until waits until t. It returns false if ctx is done first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	for {
		d := time.Until(t)
		if d <= 0 {
			return ctx.Err() == nil
		}
		if d > coarseAbove {
			s.timer.Reset(d - coarseAbove/2)
			select {
			case <-s.timer.C:
			case <-ctx.Done():
				return false
			}
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		preciseSleep(d) // EINTR: the loop sleeps the rest
	}
}

func (s *sleeper) close() { s.timer.Stop() }

// preciseSleep sleeps d in nanosleep(2) with 1 ns timer slack, then puts
// the thread's slack back.
func preciseSleep(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err == nil && old != 1 {
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	}
	ts := unix.NsecToTimespec(int64(d))
	unix.Nanosleep(&ts, nil)
}
