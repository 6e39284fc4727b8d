package runner

import (
	"fmt"
	"time"

	"github.com/portshare/portshare/sharer/daemon"
)

// checkFDs compares the daemon's descriptors with its baseline: one
// control connection fewer for each worker gone, one more for each
// connection still open. After a restart the baseline is the new
// process's, taken once every worker registered again.
func (o *one) checkFDs(st *daemon.Status) {
	o.mu.Lock()
	base, restarted := o.fdBase, o.restarts > 0
	o.mu.Unlock()
	workersAtBase := o.workerCount
	fc := &o.run.FDs
	fc.Baseline = base
	allowed := func(st *daemon.Status) int {
		return base - max(workersAtBase-len(st.Workers), 0) + int(min(st.Ledger.Open, st.Ledger.Accepted))
	}
	fc.Allowed = allowed(st)
	if base < 0 {
		fc.Note = "the daemon was restarted and its workers did not all register again: no baseline for the new process"
		fc.After = o.d.fds()
		return
	}
	if restarted {
		fc.Note = "baseline of the restarted daemon, once every worker registered again"
	}
	fc.Checked = true
	deadline := time.Now().Add(fdSettle)
	for {
		// Count first, then ask for the status the count is judged by:
		// the daemon closes its end of a status connection only after
		// the reply, so a count taken just after a status may include
		// it. And the status is asked for again each time, because a
		// worker evicted by compat keeps running and registers again
		// after its back-off, bringing its control connection back.
		fc.After = o.d.fds()
		if now, err := o.status(time.Second); err == nil {
			st = now
			fc.Allowed = allowed(st)
		}
		if fc.After >= 0 && fc.After <= fc.Allowed {
			return
		}
		if time.Now().After(deadline) {
			o.finding("fd", "the daemon holds %d descriptors %s after the drain; its baseline was %d (%d allowed with %d of %d workers left and %d connections open)",
				fc.After, fdSettle, base, fc.Allowed, len(st.Workers), workersAtBase, st.Ledger.Open)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ledgerImbalance says how a ledger fails to balance (accepted =
// outcomes + open), or "" if it balances. The daemon derives open as
// accepted − outcomes in unsigned arithmetic, so adding them back always
// gives accepted: an outcome recorded twice shows only as more outcomes
// than accepts, which wraps open around to a huge value.
func ledgerImbalance(l daemon.LedgerSnapshot) string {
	out := sum(l.Outcomes)
	if out > l.Accepted || l.Accepted-out != l.Open {
		return fmt.Sprintf("accepted %d, outcomes %d, open %d", l.Accepted, out, int64(l.Open))
	}
	return ""
}
