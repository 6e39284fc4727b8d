package daemon

import (
	"container/heap"
	"sync"
	"time"
)

// clock is the daemon's one timer for per-connection deadlines
// (receive_timeout, queue_timeout, dispatch_timeout): a min-heap under its
// own lock and a single runtime timer, re-armed only when an earlier
// deadline arrives. Per-connection runtime timers would each wake the
// network poller (an eventfd write and a thread wake-up) on the hand-off
// path; with steady traffic, deadlines arrive in order and this one is
// rarely re-armed.
type clock struct {
	mu    sync.Mutex
	heap  deadlineHeap
	timer *time.Timer
	armed time.Time // when timer fires; zero when it is not set
}

// deadline is one connection's pending deadline. gen changes whenever it is
// scheduled or cancelled, so a callback already on its way can tell it is
// stale.
type deadline struct {
	at   time.Time
	idx  int // position in the heap, -1 when not scheduled
	gen  uint64
	fire func(gen uint64)
}

func newClock() *clock {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &clock{timer: t}
}

// schedule (re)sets dl to call fire(gen) at about at, on the clock's
// goroutine. fire must check current(dl, gen) under whatever lock guards
// the state it changes.
func (k *clock) schedule(dl *deadline, at time.Time, fire func(gen uint64)) {
	k.mu.Lock()
	dl.at, dl.fire = at, fire
	dl.gen++
	if dl.idx >= 0 && dl.idx < len(k.heap) && k.heap[dl.idx] == dl {
		heap.Fix(&k.heap, dl.idx)
	} else {
		heap.Push(&k.heap, dl)
	}
	k.armLocked(at)
	k.mu.Unlock()
}

// cancel unschedules dl. The timer is left as it is: firing early, it finds
// nothing due and re-arms.
func (k *clock) cancel(dl *deadline) {
	k.mu.Lock()
	dl.gen++
	if dl.idx >= 0 && dl.idx < len(k.heap) && k.heap[dl.idx] == dl {
		heap.Remove(&k.heap, dl.idx)
	}
	k.mu.Unlock()
}

// current reports whether a callback for gen is still the latest word on dl.
func (k *clock) current(dl *deadline, gen uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return dl.gen == gen
}

func (k *clock) armLocked(at time.Time) {
	if !k.armed.IsZero() && !at.Before(k.armed) {
		return
	}
	k.armed = at
	k.timer.Reset(time.Until(at))
}

// run calls due deadlines until done is closed.
func (k *clock) run(done <-chan struct{}) {
	type due struct {
		fire func(uint64)
		gen  uint64
	}
	var batch []due
	for {
		select {
		case <-done:
			k.timer.Stop()
			return
		case <-k.timer.C:
		}
		now := time.Now()
		k.mu.Lock()
		k.armed = time.Time{}
		for len(k.heap) > 0 && !k.heap[0].at.After(now) {
			dl := heap.Pop(&k.heap).(*deadline)
			batch = append(batch, due{dl.fire, dl.gen})
		}
		if len(k.heap) > 0 {
			k.armLocked(k.heap[0].at)
		}
		k.mu.Unlock()
		for _, d := range batch {
			d.fire(d.gen)
		}
		clear(batch)
		batch = batch[:0]
	}
}

type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *deadlineHeap) Push(x any) {
	dl := x.(*deadline)
	dl.idx = len(*h)
	*h = append(*h, dl)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	dl := old[len(old)-1]
	old[len(old)-1] = nil
	dl.idx = -1
	*h = old[:len(old)-1]
	return dl
}
