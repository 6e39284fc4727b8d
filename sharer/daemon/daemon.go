// Package daemon is the port-sharing daemon: it owns the shared TCP ports,
// reads each new connection's routing key, and hands the socket to the
// registered worker over the control socket (see docs/ARCHITECTURE.md).
//
// Locking: Daemon.mu guards the route table, ports, workers, queues and
// every conn once its routing key is known. Sends on control sockets and
// writes to clients never happen under it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/route"
)

// LeakedHandleMessage is SMSvcHost's event 8, logged on every dispatch
// timeout under both policies.
const LeakedHandleMessage = "An error occurred while dispatching a duplicated socket: this handle is now leaked in the process"

// shutdownDrain bounds how long SIGTERM waits for hand-offs in flight.
const shutdownDrain = 5 * time.Second

// Daemon is one running port-sharing service. Create it with New, run it
// with Serve.
type Daemon struct {
	log      *slog.Logger
	cfg      atomic.Pointer[config.Config]
	accounts atomic.Pointer[config.Accounts]
	policy   config.Policy // fixed for the daemon's life
	ledger   Ledger
	clock    *clock
	m        *metrics
	inflight atomic.Int64 // hand-offs sent and not yet acknowledged

	ctl     *net.UnixListener
	metrics net.Listener
	nextID  atomic.Uint64
	wg      sync.WaitGroup
	closing atomic.Bool

	mu       sync.Mutex
	routes   route.Table[*routeEntry] // live: each has at least one worker
	departed route.Table[*routeEntry] // reclaim: last worker left, within grace_period
	ports    map[int]*portListener
	workers  map[uint64]*registration
	backoff  map[string]time.Time // compat: service → earliest re-registration

	liveMu sync.Mutex
	live   map[*conn]struct{} // client connections the daemon still holds open
}

// New checks cfg, resolves allow_accounts, and binds the control socket and
// the metrics address. Shared ports are opened later, when the first route
// on each registers.
func New(cfg config.Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	acc, err := config.ResolveAccounts(cfg.AllowAccounts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgName(&cfg), err)
	}
	d := &Daemon{
		log:     log,
		policy:  cfg.DispatchFailurePolicy,
		m:       newMetrics(),
		ports:   map[int]*portListener{},
		workers: map[uint64]*registration{},
		backoff: map[string]time.Time{},
		live:    map[*conn]struct{}{},
		clock:   newClock(),
	}
	d.cfg.Store(&cfg)
	d.accounts.Store(&acc)
	d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portshare_pending_connections",
		Help: "Connections accepted and not yet handed off: reading their routing key or waiting in a route's queue."},
		func() float64 { return float64(d.pendingCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portshare_handoffs_inflight", Help: "Hand-offs sent to workers and not yet acknowledged."},
			func() float64 { return float64(d.inflight.Load()) }))
	d.m.listen.MustRegister(listenQueueCollector{d})
	if d.ctl, err = listenControl(cfg.ControlSocket); err != nil {
		return nil, err
	}
	if cfg.MetricsAddr != "" {
		if d.metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			d.ctl.Close()
			return nil, fmt.Errorf("metrics_addr %s: %w", cfg.MetricsAddr, err)
		}
	}
	return d, nil
}

func cfgName(c *config.Config) string {
	if c.File == "" {
		return "config"
	}
	return c.File
}

// listenControl binds the SOCK_SEQPACKET control socket with mode 0660,
// creating its directory if missing and replacing a stale socket left by a
// crashed daemon. A socket that still answers belongs to a running daemon
// and is an error.
func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("control_socket %s: %w", path, err)
	}
	if err := safeDir(dir); err != nil {
		return nil, fmt.Errorf("control_socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control_socket %s exists and is not a socket; remove it or choose another path", path)
		}
		if c, err := net.DialTimeout("unixpacket", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control_socket %s: another portshare daemon is serving it; stop it or choose another control_socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control_socket %s: removing stale socket: %w", path, err)
		}
	}
	old := syscall.Umask(0o117) // the socket is born 0660: no window where others may connect
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control_socket %s: %w", path, err)
	}
	return ln, nil
}

// safeDir refuses a socket directory someone else could swap the socket in:
// it must belong to us or root, and not be writable by others unless
// sticky (as /tmp is).
func safeDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("directory %s belongs to uid %d: another user could replace the socket; choose a directory of your own", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("directory %s is writable by others (mode %04o): another user could replace the socket; use chmod go-w", dir, fi.Mode().Perm())
	}
	return nil
}

// ControlSocket returns the path workers register at.
func (d *Daemon) ControlSocket() string { return d.cfg.Load().ControlSocket }

// MetricsAddr returns the bound metrics address, or "" when metrics are off.
func (d *Daemon) MetricsAddr() string {
	if d.metrics == nil {
		return ""
	}
	return d.metrics.Addr().String()
}

// pendingCount is the connections accepted and not yet handed off: open
// in the ledger and not in flight to a worker.
func (d *Daemon) pendingCount() int64 {
	return max(int64(d.ledger.open())-d.inflight.Load(), 0)
}

// Ledger returns the current ledger.
func (d *Daemon) Ledger() LedgerSnapshot { return d.ledger.Snapshot() }

// Serve runs the daemon until ctx is done, then shuts down: it stops
// accepting, answers or closes every connection it still holds (outcome
// shutdown, after up to 5 s for hand-offs in flight to be acknowledged),
// closes the worker connections so workers re-register with the next
// daemon, and returns nil.
func (d *Daemon) Serve(ctx context.Context) error {
	var srv *http.Server
	if d.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{d.m.reg, d.m.listen}, promhttp.HandlerOpts{}))
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		d.wg.Go(func() { srv.Serve(d.metrics) })
	}
	d.wg.Go(d.acceptControl)
	clockDone := make(chan struct{})
	d.wg.Go(func() { d.clock.run(clockDone) })
	cfg := d.cfg.Load()
	d.log.Info("portshare daemon serving", "control_socket", cfg.ControlSocket, "policy", d.policy,
		"listen_backlog", cfg.ListenBacklog, "max_pending_accepts", cfg.MaxPendingAccepts,
		"max_pending_connections", cfg.MaxPendingConnections, "receive_timeout", cfg.ReceiveTimeout,
		"dispatch_timeout", cfg.DispatchTimeout)
	<-ctx.Done()
	d.shutdown()
	close(clockDone)
	if srv != nil {
		srv.Close()
	}
	d.wg.Wait()
	d.log.Info("portshare daemon stopped", "ledger", d.ledger.Snapshot())
	return nil
}

func (d *Daemon) shutdown() {
	d.closing.Store(true)
	d.ctl.Close()
	d.mu.Lock()
	for _, p := range d.ports {
		p.close()
	}
	d.ports = map[int]*portListener{}
	var ending []*conn
	endQueue := func(_ route.URI, re *routeEntry) bool {
		for c := d.popLocked(re); c != nil; c = d.popLocked(re) {
			ending = append(ending, c)
		}
		d.stopGraceLocked(re)
		return true
	}
	d.routes.Each(endQueue)
	d.departed.Each(endQueue)
	d.mu.Unlock()
	d.goodbye(ending)
	// Wake every connection still reading its routing key.
	d.liveMu.Lock()
	for c := range d.live {
		c.tcp.SetReadDeadline(time.Unix(1, 0))
	}
	d.liveMu.Unlock()
	// Give hand-offs in flight a moment to be acknowledged; then take back
	// the rest, so that no client waits on a worker that never takes it.
	deadline := time.Now().Add(min(shutdownDrain, d.cfg.Load().DispatchTimeout))
	for time.Now().Before(deadline) && d.inflight.Load() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	d.mu.Lock()
	ending = ending[:0]
	var ws []*registration
	for _, w := range d.workers {
		for _, c := range w.inflight {
			d.landLocked(w, c)
			ending = append(ending, c)
		}
		ws = append(ws, w)
	}
	d.mu.Unlock()
	d.goodbye(ending)
	for _, w := range ws {
		w.ctl.Close() // its read loop removes it
	}
	d.liveMu.Lock()
	for c := range d.live {
		c.tcp.Close()
	}
	d.liveMu.Unlock()
}

// goodbye ends connections the daemon holds at shutdown (outcome
// shutdown). Reclaim tells each client the server is busy and shuts the
// socket down both ways, the copy a worker may hold included; compat
// closes its own copy, as a stopping SMSvcHost does.
func (d *Daemon) goodbye(cs []*conn) {
	for _, c := range cs {
		d.finish(c, Shutdown, "")
		if d.policy == config.Reclaim {
			if msg := refusal(c, nmf.FaultServerTooBusy); msg != nil {
				c.tcp.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.tcp.Write(msg)
			}
			shutdownSocket(c.tcp, unix.SHUT_RDWR)
		}
		d.closeConn(c)
	}
}

// Reload applies a new configuration (SIGHUP). allow_accounts, the timeouts,
// max_pending_connections, listen_backlog, grace_period, reregister_backoff
// and max_http_head change live;
// control_socket, listen_addresses, max_pending_accepts, metrics_addr,
// dispatch_failure_policy and log_level need a restart and are kept, with
// a warning.
func (d *Daemon) Reload(next config.Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	acc, err := config.ResolveAccounts(next.AllowAccounts)
	if err != nil {
		return fmt.Errorf("%s: %w", cfgName(&next), err)
	}
	cur := d.cfg.Load()
	keep := func(key string, changed bool) {
		if changed {
			d.log.Warn("configuration key needs a restart to change; keeping the running value", "key", key)
		}
	}
	keep("control_socket", next.ControlSocket != cur.ControlSocket)
	keep("listen_addresses", fmt.Sprint(next.ListenAddresses) != fmt.Sprint(cur.ListenAddresses))
	keep("max_pending_accepts", next.MaxPendingAccepts != cur.MaxPendingAccepts)
	keep("metrics_addr", next.MetricsAddr != cur.MetricsAddr)
	keep("dispatch_failure_policy", next.DispatchFailurePolicy != cur.DispatchFailurePolicy)
	keep("log_level", next.LogLevel != cur.LogLevel)
	next.ControlSocket, next.ListenAddresses, next.MaxPendingAccepts = cur.ControlSocket, cur.ListenAddresses, cur.MaxPendingAccepts
	next.MetricsAddr, next.DispatchFailurePolicy, next.LogLevel = cur.MetricsAddr, cur.DispatchFailurePolicy, cur.LogLevel
	d.accounts.Store(&acc)
	d.cfg.Store(&next)
	d.mu.Lock()
	for _, p := range d.ports {
		p.setBacklog(next.ListenBacklog)
		p.setPendingCap(next.MaxPendingConnections)
	}
	d.mu.Unlock()
	d.log.Info("configuration reloaded", "file", next.File)
	return nil
}

func (d *Daemon) track(c *conn) {
	d.liveMu.Lock()
	d.live[c] = struct{}{}
	if d.closing.Load() {
		c.tcp.SetReadDeadline(time.Unix(1, 0)) // shutdown already woke the others
	}
	d.liveMu.Unlock()
}

// closeConn closes the daemon's copy of a client socket; a connection
// still holding a max_pending_connections token gives it back now.
func (d *Daemon) closeConn(c *conn) {
	d.liveMu.Lock()
	delete(d.live, c)
	d.liveMu.Unlock()
	c.tcp.Close()
	d.releaseToken(c)
}

// finish records c's one outcome; later calls are ignored. reason labels
// the failure counters.
func (d *Daemon) finish(c *conn, o Outcome, reason string) bool {
	if !c.finished.CompareAndSwap(false, true) {
		return false
	}
	d.ledger.record(o)
	d.m.outcomes.WithLabelValues(o.String()).Inc()
	switch o {
	case Dispatched:
		d.m.dispatched.Inc()
		d.m.dispatchDuration.Observe(time.Since(c.accepted).Seconds())
	case ProtocolFailure, ReceiveTimeout:
		d.m.protocolFailures.WithLabelValues(reason).Inc()
	case NoRoute, QueueFull, QueueTimeout, DispatchTimeout, DispatchError:
		d.m.dispatchFailures.WithLabelValues(reason).Inc()
	}
	return true
}

func (d *Daemon) releaseToken(c *conn) {
	if c.token.CompareAndSwap(true, false) {
		c.gate.release()
	}
}

var errClosing = errors.New("daemon shutting down")
