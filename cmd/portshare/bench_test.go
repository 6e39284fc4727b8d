package main

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portshare/portshare/sharer/testutil"
)

// Benchmarks compare a session through the daemon with the same reference
// worker serving its own socket (--listen), in the same run, and report
// ratios; single times on a shared machine mean little.
//
//	go test -run '^$' -bench 'Handoff|Silent' -benchtime 2000x ./cmd/portshare

// targets starts a direct worker and a daemon with a worker behind it.
func targets(b *testing.B, extra string) (direct, shared string, e *env) {
	b.Helper()
	direct = listenAddr(b, "echo")

	socket := testutil.SocketPath(b)
	e = &env{dir: socket[:strings.LastIndex(socket, "/")], socket: socket, port: testutil.FreePort(b)}
	e.cfg = writeConfig(b, e.dir, socket, extra)
	e.daemon = testutil.Start(b, nil, "serve", "--config", e.cfg)
	e.daemon.WaitOutput(b, "portshare daemon serving", 10*time.Second)
	args := []string{"worker", "--control-socket", socket, "--name", "w", "--mode", "echo", "--max-inflight", "64", "--route", e.route("net.tcp://+:%d/bench/")}
	testutil.Start(b, nil, args...).WaitOutput(b, "worker registered", 10*time.Second)
	return direct, e.addr(), e
}

func session(b testing.TB, addr, via string) time.Duration {
	start := time.Now()
	if _, err := testutil.NetTCPSession(addr, via, 5*time.Second, "x"); err != nil {
		b.Fatalf("session via %s: %v", addr, err)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkHandoffLatency alternates sessions (connect, preamble,
// PreambleAck, one echo, End) direct and through the daemon, and reports
// the medians and what the hand-off adds.
func BenchmarkHandoffLatency(b *testing.B) {
	direct, shared, e := targets(b, "")
	via := e.via("/bench/")
	for range 50 {
		session(b, direct, via)
		session(b, shared, via)
	}
	var d, s []time.Duration
	b.ResetTimer()
	for range b.N {
		d = append(d, session(b, direct, via))
		s = append(s, session(b, shared, via))
	}
	md, ms := median(d), median(s)
	b.ReportMetric(float64(md.Microseconds()), "direct-µs")
	b.ReportMetric(float64(ms.Microseconds()), "shared-µs")
	b.ReportMetric(float64((ms - md).Microseconds()), "added-µs")
}

// BenchmarkHandoffThroughput runs batches of sessions from 8 concurrent
// clients, alternately direct and through the daemon, and reports the
// daemon's sessions/s as a fraction of direct.
func BenchmarkHandoffThroughput(b *testing.B) {
	direct, shared, e := targets(b, "")
	via := e.via("/bench/")
	batch := func(addr string, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range n / 8 {
					session(b, addr, via)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	batch(direct, 200)
	batch(shared, 200)
	var td, ts time.Duration
	b.ResetTimer()
	for range b.N {
		td += batch(direct, 200)
		ts += batch(shared, 200)
	}
	n := float64(b.N * 200)
	b.ReportMetric(n/td.Seconds(), "direct-sessions/s")
	b.ReportMetric(n/ts.Seconds(), "shared-sessions/s")
	b.ReportMetric(td.Seconds()/ts.Seconds(), "shared/direct")
}

// BenchmarkSilentConnections holds 10,000 connections that send nothing
// (within receive_timeout) and reports the daemon's resident memory and
// the latency of normal sessions meanwhile, against the same sessions
// before.
func BenchmarkSilentConnections(b *testing.B) {
	const silent = 10000
	testutil.RaiseNOFILE(b, 2*silent+1000)
	_, shared, e := targets(b, "max_pending_connections: 20000\nmax_pending_accepts: 8\nlisten_backlog: 4096\nreceive_timeout: 5m\n")
	via := e.via("/bench/")
	for range 50 {
		session(b, shared, via)
	}
	var before []time.Duration
	for range 200 {
		before = append(before, session(b, shared, via))
	}
	rssBefore := testutil.RSS(b, e.daemon.PID())
	b.ResetTimer()
	for range b.N {
		conns := make([]net.Conn, 0, silent)
		for range silent {
			c, err := net.Dial("tcp", shared)
			if err != nil {
				b.Fatalf("silent connection %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		testutil.Eventually(b, 30*time.Second, func() bool {
			st := fetchStatusOrNil(e.socket)
			return st != nil && st.Ledger.Open >= silent
		}, "daemon holds %d silent connections", silent)
		var during []time.Duration
		for range 200 {
			during = append(during, session(b, shared, via))
		}
		rss := testutil.RSS(b, e.daemon.PID())
		for _, c := range conns {
			c.Close()
		}
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(rss-rssBefore)/silent, "bytes/silent-conn")
		b.ReportMetric(float64(median(during).Microseconds()), "session-µs-held")
		b.ReportMetric(float64(median(before).Microseconds()), "session-µs-idle")
	}
}
