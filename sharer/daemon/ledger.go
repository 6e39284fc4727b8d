package daemon

import (
	"encoding/json"
	"log/slog"
	"sync/atomic"
)

// Outcome is how an accepted connection ended (SPEC §5). Every accepted
// connection ends in exactly one.
type Outcome uint8

const (
	Dispatched Outcome = iota
	NoRoute
	ProtocolFailure
	ReceiveTimeout
	QueueFull
	QueueTimeout
	DispatchTimeout
	DispatchError
	Shutdown
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"dispatched", "no_route", "protocol_failure", "receive_timeout", "queue_full",
	"queue_timeout", "dispatch_timeout", "dispatch_error", "shutdown",
}

func (o Outcome) String() string { return outcomeNames[o] }

// OutcomeNames lists the outcomes in ledger order.
func OutcomeNames() []string { return outcomeNames[:] }

// Ledger counts accepted connections and their outcomes. It is lock-free;
// a Snapshot is consistent in that Open is never negative.
type Ledger struct {
	accepted atomic.Uint64
	outcomes [numOutcomes]atomic.Uint64
}

func (l *Ledger) accept()          { l.accepted.Add(1) }
func (l *Ledger) record(o Outcome) { l.outcomes[o].Add(1) }

// open is Snapshot().Open without the map.
func (l *Ledger) open() uint64 {
	var sum uint64
	for i := range l.outcomes {
		sum += l.outcomes[i].Load()
	}
	return l.accepted.Load() - sum
}

// LedgerSnapshot is the ledger at one moment: Accepted equals the sum of
// Outcomes plus Open.
type LedgerSnapshot struct {
	Accepted uint64
	Open     uint64
	Outcomes map[string]uint64
}

// Snapshot reads the ledger. Outcomes are read before Accepted so that a
// connection finishing meanwhile can only make Open larger, never negative.
func (l *Ledger) Snapshot() LedgerSnapshot {
	s := LedgerSnapshot{Outcomes: make(map[string]uint64, numOutcomes)}
	var sum uint64
	for i := range l.outcomes {
		n := l.outcomes[i].Load()
		s.Outcomes[outcomeNames[i]] = n
		sum += n
	}
	s.Accepted = l.accepted.Load()
	s.Open = s.Accepted - sum
	return s
}

// LogValue logs the ledger as accepted, open and one count per outcome.
func (s LedgerSnapshot) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Uint64("accepted", s.Accepted), slog.Uint64("open", s.Open)}
	for _, name := range outcomeNames {
		attrs = append(attrs, slog.Uint64(name, s.Outcomes[name]))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON writes {"accepted":…,"open":…,"dispatched":…,…}.
func (s LedgerSnapshot) MarshalJSON() ([]byte, error) {
	m := make(map[string]uint64, len(s.Outcomes)+2)
	for k, v := range s.Outcomes {
		m[k] = v
	}
	m["accepted"], m["open"] = s.Accepted, s.Open
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *LedgerSnapshot) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	s.Accepted, s.Open = m["accepted"], m["open"]
	delete(m, "accepted")
	delete(m, "open")
	s.Outcomes = m
	return nil
}
