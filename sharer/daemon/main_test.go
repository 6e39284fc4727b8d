package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/testutil"
	"github.com/portshare/portshare/sharer/worker"
)

func TestMain(m *testing.M) {
	testutil.RunChildIfRequested(testutil.WorkerMain)
	goleak.VerifyTestMain(m)
}

// harness is one in-process daemon on loopback with short limits.
type harness struct {
	t      *testing.T
	d      *Daemon
	socket string
	port   int
	logs   *testutil.Buffer
	stop   func()
}

func startDaemon(t *testing.T, mutate func(*config.Config)) *harness {
	t.Helper()
	cfg := testutil.LoopbackConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	return startDaemonWith(t, cfg, testutil.FreePort(t))
}

func startDaemonWith(t *testing.T, cfg config.Config, port int) *harness {
	t.Helper()
	logs := &testutil.Buffer{}
	d, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Serve(ctx); close(done) }()
	h := &harness{t: t, d: d, socket: cfg.ControlSocket, port: port, logs: logs}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("daemon did not stop within 15s")
			}
		})
	}
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return h
}

func (h *harness) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)) }

// route formats a route on the harness port: route("net.tcp://+:%d/orders/").
func (h *harness) route(format string) string { return fmt.Sprintf(format, h.port) }

// via is a client Via on the harness port.
func (h *harness) via(path string) string {
	return fmt.Sprintf("net.tcp://localhost:%d%s", h.port, path)
}

// listen registers an in-process worker listener.
func (h *harness) listen(name string, credit int, routes ...string) *worker.Listener {
	h.t.Helper()
	ln, err := worker.Listen(context.Background(), routes, worker.Options{
		ControlSocket: h.socket, Name: name, MaxInflight: credit,
		Logger: slog.New(slog.NewTextHandler(h.logs, nil)),
	})
	require.NoError(h.t, err)
	h.t.Cleanup(func() { ln.Close() })
	return ln
}

// serve runs the echo (or http) reference worker on ln until the test ends.
func (h *harness) serve(ln net.Listener, name string, mode refworker.Mode) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { refworker.Serve(ctx, ln, refworker.Options{Name: name, Mode: mode}); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) echoWorker(name string, routes ...string) *worker.Listener {
	ln := h.listen(name, 4, routes...)
	h.serve(ln, name, refworker.Echo)
	return ln
}

// balanced waits until no connection is open and checks the ledger sums.
func (h *harness) balanced() LedgerSnapshot {
	h.t.Helper()
	var s LedgerSnapshot
	testutil.Eventually(h.t, 10*time.Second, func() bool { s = h.d.Ledger(); return s.Open == 0 }, "ledger open connections: %+v", s)
	var sum uint64
	for _, v := range s.Outcomes {
		sum += v
	}
	require.Equal(h.t, s.Accepted, sum, "accepted must equal the sum of outcomes: %+v", s)
	return s
}
