// Package loadgen generates load against a port-sharing daemon and its
// workers, or any server that speaks the same protocols, and measures it
// honestly.
//
// A run is an arrival model (a Pacer for the open model, a concurrency for
// the closed one) driving sessions of one protocol (net.tcp, http or a raw
// tcp connection storm, picked by the target's scheme). In the open model
// every session's latency is measured from its intended send time, so a
// server that stalls shows up as latency and not as missing samples
// (no coordinated omission); a send the generator could not make on time is
// counted as late. Every session ends in one outcome class (see Outcome).
//
// Client faults (ClientFault) make an evenly spread share of the sessions
// misbehaving clients: silent, dribbling, sending garbage or an oversized
// Via, asking for an unknown route, resetting, or connecting and closing.
// They are measured apart from the normal sessions, so that a result says
// what the well-behaved clients saw meanwhile.
//
// A run's measurements are a Result: HDR histograms per phase, outcome
// counts and a per-second time series, written as JSON in the format
// described in FORMAT.md. Memory stays flat however long a run lasts.
// Results from several runs merge (Merge); reports read them later.
package loadgen
