package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the daemon's Prometheus series (SPEC §5 names, plus the
// ledger by outcome and the queue and in-flight gauges the tuning runs
// sample).
type metrics struct {
	reg *prometheus.Registry
	// listen holds the kernel's listen-queue series apart: status reports
	// them in its own table (Status.Listen), so its counters gather reg
	// alone and read each socket once; /metrics serves both.
	listen *prometheus.Registry

	accepted         prometheus.Counter
	dispatched       prometheus.Counter
	dispatchFailures *prometheus.CounterVec
	protocolFailures *prometheus.CounterVec
	registrations    prometheus.Gauge
	urisRegistered   prometheus.Counter
	urisUnregistered prometheus.Counter
	queued           prometheus.Gauge
	outcomes         *prometheus.CounterVec
	acceptPauses     *prometheus.CounterVec
	evictions        *prometheus.CounterVec
	dispatchDuration prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg:    prometheus.NewRegistry(),
		listen: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portshare_connections_accepted_total", Help: "Connections accepted on shared ports."}),
		dispatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portshare_connections_dispatched_total", Help: "Connections handed off and acknowledged by a worker."}),
		dispatchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portshare_dispatch_failures_total",
			Help: "Connections that could not be dispatched, by reason; reason=\"timeout\" is the leaked-handle event."}, []string{"reason"}),
		protocolFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portshare_protocol_failures_total", Help: "Connections whose routing key could not be read, by reason."}, []string{"reason"}),
		registrations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portshare_registrations_active", Help: "Worker registrations currently connected."}),
		urisRegistered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portshare_uris_registered_total", Help: "Route URIs added to the route table."}),
		urisUnregistered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portshare_uris_unregistered_total", Help: "Route URIs removed from the route table."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portshare_queued_connections", Help: "Connections waiting in route queues for a worker."}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portshare_connection_outcomes_total", Help: "Ledger: accepted connections by final outcome."}, []string{"outcome"}),
		acceptPauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portshare_accept_pauses_total", Help: "Times accepting paused, by reason (emfile, enfile, error)."}, []string{"reason"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portshare_workers_evicted_total", Help: "Workers dropped by the compat policy after a failed hand-off, by reason."}, []string{"reason"}),
		dispatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portshare_dispatch_duration_seconds",
			Help:    "From accept to the worker's acknowledgement of the hand-off.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 16)}),
	}
	m.reg.MustRegister(m.accepted, m.dispatched, m.dispatchFailures, m.protocolFailures, m.registrations,
		m.urisRegistered, m.urisUnregistered, m.queued, m.outcomes, m.acceptPauses, m.evictions,
		m.dispatchDuration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range outcomeNames {
		m.outcomes.WithLabelValues(o)
	}
	m.dispatchFailures.WithLabelValues("timeout")
	m.evictions.WithLabelValues("dispatch timeout")
	m.evictions.WithLabelValues("hand-off failed")
	m.protocolFailures.WithLabelValues("receive_timeout")
	return m
}

// listenQueueCollector reports each listening socket's accept queue, read
// from the kernel at every scrape: the backlog SMSvcHost's listenBacklog
// sizes, and the first place a stalled daemon's connections pile up.
type listenQueueCollector struct{ d *Daemon }

var (
	listenQueueDesc = prometheus.NewDesc("portshare_listen_queue",
		"Connections the kernel completed on a shared port's socket, waiting for accept(2).", []string{"address"}, nil)
	listenBacklogDesc = prometheus.NewDesc("portshare_listen_backlog",
		"The socket's listen backlog as the kernel applied it (the queue is full at backlog+1).", []string{"address"}, nil)
)

func (listenQueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- listenQueueDesc
	ch <- listenBacklogDesc
}

func (c listenQueueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.d.listenQueues() {
		ch <- prometheus.MustNewConstMetric(listenQueueDesc, prometheus.GaugeValue, float64(q.Queued), q.Address)
		ch <- prometheus.MustNewConstMetric(listenBacklogDesc, prometheus.GaugeValue, float64(q.Backlog), q.Address)
	}
}
