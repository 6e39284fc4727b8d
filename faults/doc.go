// Package faults reproduces, on demand and repeatably, the failures that
// shared-port services meet in production: slow, stalled, hung and
// crashing workers (Listener), misbehaving clients (the specs package
// loadgen runs), a paused, restarted or descriptor-starved daemon
// (Injector), and a slow or lossy network between namespaces (Netns).
//
// A fault is written NAME or NAME:key=value,… (Parse); at= and for= place
// it in time relative to a schedule's start. Every fault taking or leaving
// effect is an Event, so that reports can shade it on their timelines.
// Kernel counters (TCPExt) show from the kernel's side what a fault did to
// the listen backlog.
package faults
