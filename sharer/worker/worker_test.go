package worker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/daemon"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/testutil"
	"github.com/portshare/portshare/sharer/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// step bounds every single wait of a test.
const step = 5 * time.Second

// env is one in-process daemon on loopback; restart replaces it by a new
// one on the same control socket and port.
type env struct {
	t    *testing.T
	cfg  config.Config
	port int
	logs *testutil.Buffer

	mu   sync.Mutex
	d    *daemon.Daemon
	stop func()
}

func startDaemon(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	cfg := testutil.LoopbackConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	e := &env{t: t, cfg: cfg, port: testutil.FreePort(t), logs: &testutil.Buffer{}}
	e.start()
	t.Cleanup(func() {
		e.shutdown()
		if t.Failed() {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) start() {
	e.t.Helper()
	d, err := daemon.New(e.cfg, slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Serve(ctx); close(done) }()
	e.mu.Lock()
	e.d = d
	e.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			e.t.Errorf("daemon did not stop within 15s")
		}
	}
	e.mu.Unlock()
}

// shutdown stops the running daemon, if any.
func (e *env) shutdown() {
	e.mu.Lock()
	stop := e.stop
	e.stop = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (e *env) restart() {
	e.shutdown()
	e.start()
}

func (e *env) daemon() *daemon.Daemon {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.d
}

func (e *env) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port)) }

// route formats a route on the daemon's port: route("http://+:%d/api/").
func (e *env) route(format string) string { return fmt.Sprintf(format, e.port) }

func (e *env) via(path string) string { return fmt.Sprintf("net.tcp://localhost:%d%s", e.port, path) }

func (e *env) listen(name string, credit int, routes ...string) *worker.Listener {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	ln, err := worker.Listen(ctx, routes, worker.Options{
		ControlSocket: e.cfg.ControlSocket, Name: name, MaxInflight: credit,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { ln.Close() })
	return ln
}

// balanced waits until the daemon holds no connection and checks that every
// accepted one has exactly one outcome.
func (e *env) balanced() daemon.LedgerSnapshot {
	e.t.Helper()
	var s daemon.LedgerSnapshot
	testutil.Eventually(e.t, step, func() bool { s = e.daemon().Ledger(); return s.Open == 0 }, "open connections: %+v", s)
	var sum uint64
	for _, v := range s.Outcomes {
		sum += v
	}
	require.Equal(e.t, s.Accepted, sum, "accepted = sum of outcomes: %+v", s)
	return s
}

// acceptAsync starts ln.Accept; the returned func waits for its result,
// bounded by step: on timeout it closes ln so the Accept goroutine ends,
// and fails the test. A returned Conn is closed at the end of the test.
func acceptAsync(t *testing.T, ln *worker.Listener) func() (*worker.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { c, err := ln.Accept(); ch <- result{c, err} }()
	return func() (*worker.Conn, error) {
		t.Helper()
		var r result
		select {
		case r = <-ch:
		case <-time.After(step):
			ln.Close()
			if r = <-ch; r.c != nil {
				r.c.Close()
			}
			t.Fatalf("Accept did not return within %s", step)
		}
		if r.err != nil {
			require.Nil(t, r.c)
			return nil, r.err
		}
		t.Cleanup(func() { r.c.Close() })
		c, ok := r.c.(*worker.Conn)
		require.True(t, ok, "Accept returns a *worker.Conn, got %T", r.c)
		return c, nil
	}
}

// accept is Accept bounded by step, which must succeed.
func accept(t *testing.T, ln *worker.Listener) *worker.Conn {
	t.Helper()
	c, err := acceptAsync(t, ln)()
	require.NoError(t, err)
	return c
}

// dialNetTCP connects and writes a duplex preamble for via plus extra, in
// one write.
func dialNetTCP(t *testing.T, addr, via string, extra []byte) (net.Conn, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, step)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(2*step)))
	sent := nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: via, Encoding: nmf.EncodingBinarySession})
	sent = append(sent, extra...)
	_, err = c.Write(sent)
	require.NoError(t, err)
	return c, sent
}

// serveHTTP runs http.Server on ln until the test ends.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: step}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close() // closes ln and every connection
		select {
		case err := <-done:
			assert.ErrorIs(t, err, http.ErrServerClosed)
		case <-time.After(step):
			t.Errorf("http.Server.Serve did not return after Close")
		}
	})
}

func get(t *testing.T, client *http.Client, url string) (string, error) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

// http.Serve works unchanged through the daemon, keep-alive included: both
// requests travel on one client connection, the second one read by the
// worker directly from the handed-off socket.
func TestHTTPServeWithKeepAlive(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	serveHTTP(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
	}))

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: step}
	first, err := get(t, client, "http://"+e.addr()+"/api/one")
	require.NoError(t, err)
	second, err := get(t, client, "http://"+e.addr()+"/api/two?x=1")
	require.NoError(t, err)

	var remote1, remote2 string
	_, err = fmt.Sscanf(first, "GET /api/one from %s", &remote1)
	require.NoError(t, err, first)
	_, err = fmt.Sscanf(second, "GET /api/two from %s", &remote2)
	require.NoError(t, err, second)
	assert.Equal(t, remote1, remote2, "both requests on one connection")

	tr.CloseIdleConnections()
	s := e.balanced()
	assert.EqualValues(t, 1, s.Accepted, "one client connection")
	assert.EqualValues(t, 1, s.Outcomes["dispatched"])
}

// The worker's Conn replays what the daemon read, then reads the socket:
// the worker sees the client's stream whole, byte for byte.
func TestConnReplaysPreReadBytes(t *testing.T) {
	e := startDaemon(t, nil)
	route := e.route("net.tcp://+:%d/orders/")
	ln := e.listen("orders", 1, route)
	via := e.via("/orders/a")
	client, sent := dialNetTCP(t, e.addr(), via, nmf.AppendSizedEnvelope(nil, []byte("hello")))

	c := accept(t, ln)
	assert.Equal(t, via, c.Via())
	assert.Equal(t, route, c.Route())
	assert.NotZero(t, c.ID())
	assert.Equal(t, client.LocalAddr().String(), c.RemoteAddr().String())
	require.NoError(t, c.SetDeadline(time.Now().Add(step)))

	// Read in small pieces across the end of the replayed bytes.
	got := make([]byte, len(sent))
	_, err := io.ReadFull(c, got[:3])
	require.NoError(t, err)
	_, err = io.ReadFull(c, got[3:])
	require.NoError(t, err)
	assert.Equal(t, sent, got)

	// Later bytes come from the socket itself; writes reach the client.
	_, err = client.Write([]byte("more"))
	require.NoError(t, err)
	more := make([]byte, 4)
	_, err = io.ReadFull(c, more)
	require.NoError(t, err)
	assert.Equal(t, "more", string(more))
	_, err = c.Write(nmf.AppendPreambleAck(nil))
	require.NoError(t, err)
	ack := make([]byte, 1)
	_, err = io.ReadFull(client, ack)
	require.NoError(t, err)
	assert.Equal(t, nmf.RecPreambleAck, ack[0])

	// CloseWrite reaches the client as EOF; the client closing reaches us.
	require.NoError(t, c.CloseWrite())
	n, err := client.Read(ack)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)
	client.Close()
	n, err = c.Read(more)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)

	s := e.balanced()
	assert.EqualValues(t, 1, s.Outcomes["dispatched"])
}

// Close unregisters: the daemon drops the worker, its route goes into the
// grace period (then away), and Accept afterwards returns net.ErrClosed.
func TestCloseUnregisters(t *testing.T) {
	e := startDaemon(t, func(c *config.Config) { c.GracePeriod = time.Second })
	route := e.route("http://+:%d/api/")
	ln := e.listen("api", 1, route)
	assert.Equal(t, "portshare", ln.Addr().Network())
	assert.Equal(t, route, ln.Addr().String())
	st := e.daemon().Status()
	require.Len(t, st.Routes, 1)
	assert.Equal(t, "live", st.Routes[0].State)
	require.Len(t, st.Workers, 1)
	assert.Equal(t, os.Getpid(), st.Workers[0].PID)

	require.NoError(t, ln.Close())
	testutil.Eventually(t, step, func() bool {
		st = e.daemon().Status()
		return len(st.Workers) == 0 && len(st.Routes) == 1 && st.Routes[0].State == "grace"
	}, "worker gone, route in grace: %+v", st.Routes)
	testutil.Eventually(t, step, func() bool { return len(e.daemon().Status().Routes) == 0 }, "route removed after the grace period")

	c, err := ln.Accept()
	assert.Nil(t, c)
	require.ErrorIs(t, err, net.ErrClosed)
	require.NoError(t, ln.Close(), "a second Close is harmless")
}

func TestCloseUnblocksAccept(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	first, second := acceptAsync(t, ln), acceptAsync(t, ln)
	time.Sleep(50 * time.Millisecond) // let both block
	require.NoError(t, ln.Close())
	for _, wait := range []func() (*worker.Conn, error){first, second} {
		_, err := wait()
		require.ErrorIs(t, err, net.ErrClosed)
	}
}

// Close while Accept is registering again (the daemon is gone) ends it.
func TestCloseWhileReregistering(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	wait := acceptAsync(t, ln)
	e.shutdown()
	testutil.Eventually(t, step, func() bool {
		return strings.Contains(e.logs.String(), "port-sharing daemon connection lost")
	}, "Accept saw the daemon go")
	time.Sleep(100 * time.Millisecond) // into the back-off
	require.NoError(t, ln.Close())
	_, err := wait()
	require.ErrorIs(t, err, net.ErrClosed)
}

// A daemon that refuses the re-registration ends Accept with its refusal.
func TestRefusedReregistrationEndsAccept(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	wait := acceptAsync(t, ln)
	e.shutdown()
	e.cfg.AllowAccounts = []string{"uid:4242"} // not us
	if os.Getuid() == 4242 {
		e.cfg.AllowAccounts = []string{"uid:4243"}
	}
	e.start()
	_, err := wait()
	var re *worker.RegistrationError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, control.CodeDenied, re.Code)
	_, err = acceptAsync(t, ln)()
	require.ErrorAs(t, err, &re, "later Accepts return the refusal too")
}

// Hand-offs a closed listener never accepted go to another worker of the
// same service (reclaim), with their pre-read bytes intact.
func TestCloseRequeuesUnacceptedHandoffs(t *testing.T) {
	e := startDaemon(t, nil)
	route := e.route("net.tcp://+:%d/orders/")
	first := e.listen("pool", 2, route)
	sent := map[string][]byte{}
	for _, path := range []string{"/orders/a", "/orders/b"} {
		_, sent[e.via(path)] = dialNetTCP(t, e.addr(), e.via(path), nmf.AppendSizedEnvelope(nil, []byte(path)))
	}
	testutil.Eventually(t, step, func() bool { return e.daemon().Status().Inflight == 2 }, "both handed to the first listener")

	second := e.listen("pool", 2, route)
	require.NoError(t, first.Close())
	for range 2 {
		c := accept(t, second)
		want, ok := sent[c.Via()]
		require.True(t, ok, "unexpected via %q", c.Via())
		delete(sent, c.Via())
		require.NoError(t, c.SetDeadline(time.Now().Add(step)))
		got := make([]byte, len(want))
		_, err := io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		c.Close()
	}
	s := e.balanced()
	assert.EqualValues(t, 2, s.Outcomes["dispatched"])
	assert.EqualValues(t, 2, s.Accepted)
}

// Compat evicts a worker after a dispatch timeout; its Accept drops the
// stale hand-off, waits out the back-off, registers again and serves.
func TestCompatEvictionBackoffThenServed(t *testing.T) {
	e := startDaemon(t, func(c *config.Config) {
		c.DispatchFailurePolicy = config.Compat
		c.DispatchTimeout = 200 * time.Millisecond
		c.ReregisterBackoff = 500 * time.Millisecond
	})
	ln := e.listen("orders", 1, e.route("net.tcp://+:%d/orders/"))
	stale, _ := dialNetTCP(t, e.addr(), e.via("/orders/stale"), nil)
	fault, err := testutil.ReadFault(stale)
	require.NoError(t, err)
	assert.Equal(t, nmf.FaultConnectionDispatchFailed, fault)
	testutil.Eventually(t, step, func() bool { return len(e.daemon().Status().Workers) == 0 }, "worker evicted")

	wait := acceptAsync(t, ln)
	testutil.Eventually(t, step, func() bool { return len(e.daemon().Status().Workers) == 1 }, "registered again after the back-off")
	assert.Contains(t, e.logs.String(), "evicted by the port-sharing daemon")
	_, sent := dialNetTCP(t, e.addr(), e.via("/orders/fresh"), nil)
	c, err := wait()
	require.NoError(t, err)
	assert.Equal(t, e.via("/orders/fresh"), c.Via())
	require.NoError(t, c.SetDeadline(time.Now().Add(step)))
	got := make([]byte, len(sent))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, sent, got)
	c.Close()
	s := e.balanced()
	assert.EqualValues(t, 1, s.Outcomes["dispatch_timeout"])
	assert.EqualValues(t, 1, s.Outcomes["dispatched"])
}

// A hand-off that waited past its deadline before Accept took it is closed
// and acknowledged as expired; Accept goes on to the next, fresh one.
func TestStaleHandoffDroppedAndAckedExpired(t *testing.T) {
	e := startDaemon(t, func(c *config.Config) {
		c.DispatchTimeout = 200 * time.Millisecond
		c.QueueTimeout = 10 * time.Second
	})
	ln := e.listen("orders", 1, e.route("net.tcp://+:%d/orders/"))

	stale, _ := dialNetTCP(t, e.addr(), e.via("/orders/stale"), nil)
	testutil.Eventually(t, step, func() bool {
		return e.daemon().Ledger().Outcomes["dispatch_timeout"] == 1
	}, "the stale hand-off times out at the daemon")
	// Reclaim answered the stale client; its credit stays owed until the
	// worker acknowledges, so the fresh client waits in the route's queue.
	fault, err := testutil.ReadFault(stale)
	require.NoError(t, err)
	assert.Equal(t, nmf.FaultServerTooBusy, fault)

	fresh, sent := dialNetTCP(t, e.addr(), e.via("/orders/fresh"), nil)
	testutil.Eventually(t, step, func() bool { return e.daemon().Status().Queued == 1 }, "fresh client queued")

	c := accept(t, ln)
	assert.Equal(t, e.via("/orders/fresh"), c.Via(), "Accept skipped the stale hand-off")
	require.NoError(t, c.SetDeadline(time.Now().Add(step)))
	got := make([]byte, len(sent))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, sent, got)
	_, err = c.Write([]byte{nmf.RecPreambleAck})
	require.NoError(t, err)
	ack := make([]byte, 1)
	_, err = io.ReadFull(fresh, ack)
	require.NoError(t, err)
	assert.Equal(t, nmf.RecPreambleAck, ack[0])

	st := e.daemon().Status()
	require.Len(t, st.Workers, 1)
	assert.Zero(t, st.Workers[0].Owed, "the expired ack returned the credit")
	c.Close()
	fresh.Close()
	s := e.balanced()
	assert.EqualValues(t, 1, s.Outcomes["dispatch_timeout"])
	assert.EqualValues(t, 1, s.Outcomes["dispatched"])
}

func TestMaxInflightGrant(t *testing.T) {
	reclaim := startDaemon(t, nil)
	ln := reclaim.listen("a", 4, reclaim.route("http://+:%d/a/"))
	assert.Equal(t, 4, ln.Registered().MaxInflight)
	assert.Equal(t, "reclaim", ln.Registered().Policy)
	assert.Equal(t, []string{reclaim.route("http://+:%d/a/")}, ln.Registered().Routes)
	ln = reclaim.listen("b", 0, reclaim.route("http://+:%d/b/"))
	assert.Equal(t, 1, ln.Registered().MaxInflight, "default credit 1")

	compat := startDaemon(t, func(c *config.Config) { c.DispatchFailurePolicy = config.Compat })
	ln = compat.listen("a", 4, compat.route("http://+:%d/a/"))
	assert.Equal(t, 1, ln.Registered().MaxInflight, "compat grants one hand-off in flight")
	assert.Equal(t, "compat", ln.Registered().Policy)
}

// After the daemon restarts, the listener registers with the new one by
// itself and http.Serve keeps serving.
func TestReregistersAfterDaemonRestart(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	serveHTTP(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: step}
	body, err := get(t, client, "http://"+e.addr()+"/api/before")
	require.NoError(t, err)
	assert.Equal(t, "ok /api/before", body)

	e.restart()
	testutil.Eventually(t, 3*step, func() bool {
		st := e.daemon().Status()
		return len(st.Workers) == 1 && st.Workers[0].PID == os.Getpid()
	}, "worker registered with the new daemon")
	body, err = get(t, client, "http://"+e.addr()+"/api/after")
	require.NoError(t, err)
	assert.Equal(t, "ok /api/after", body)
	assert.Contains(t, e.logs.String(), "re-registered with the port-sharing daemon")
	e.balanced()
}

func TestListenWithoutDaemon(t *testing.T) {
	sock := testutil.SocketPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	start := time.Now()
	ln, err := worker.Listen(ctx, []string{"http://+:9/x/"}, worker.Options{ControlSocket: sock})
	assert.Nil(t, ln)
	require.ErrorIs(t, err, worker.ErrNoDaemon)
	assert.Contains(t, err.Error(), sock)
	assert.Contains(t, err.Error(), "is 'portshare serve' running?")
	assert.Less(t, time.Since(start), step)
}

// A socket file left by a crashed daemon is "no daemon" too.
func TestListenStaleSocketFile(t *testing.T) {
	sock := testutil.SocketPath(t)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	_, err = worker.Listen(ctx, []string{"http://+:9/x/"}, worker.Options{ControlSocket: sock})
	require.ErrorIs(t, err, worker.ErrNoDaemon)
	assert.Contains(t, err.Error(), sock)
}

func TestListenRefused(t *testing.T) {
	e := startDaemon(t, nil)
	e.listen("orders", 1, e.route("net.tcp://+:%d/orders/"))
	for _, tc := range []struct {
		name, route, code string
	}{
		{"other", e.route("net.tcp://+:%d/orders/"), control.CodeConflict},
		{"bad", "ftp://+:21/", control.CodeBadRoute},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), step)
		ln, err := worker.Listen(ctx, []string{tc.route}, worker.Options{ControlSocket: e.cfg.ControlSocket, Name: tc.name})
		cancel()
		assert.Nil(t, ln)
		var re *worker.RegistrationError
		require.True(t, errors.As(err, &re), "%v", err)
		assert.Equal(t, tc.code, re.Code)
		assert.False(t, errors.Is(err, worker.ErrNoDaemon))
	}
}

// fakeDaemon listens on a fresh control socket, registers the first worker
// that connects, and hands the test that worker's control connection.
func fakeDaemon(t *testing.T) (string, <-chan *control.Conn) {
	t.Helper()
	sock := testutil.SocketPath(t)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	ch := make(chan *control.Conn, 1)
	go func() {
		defer close(ch)
		l.SetDeadline(time.Now().Add(step))
		uc, err := l.AcceptUnix()
		if err != nil {
			return
		}
		cc, err := control.NewConn(uc)
		if err != nil {
			uc.Close()
			return
		}
		cc.SetDeadline(time.Now().Add(step))
		var reg control.Register
		m, err := cc.Recv()
		if err == nil {
			err = m.Unmarshal(&reg)
		}
		if err == nil {
			err = cc.Send(control.TypeRegistered, control.Registered{ID: 1, Routes: reg.Routes, Policy: "reclaim", MaxInflight: reg.MaxInflight}, nil, -1, time.Second)
		}
		if err != nil {
			cc.Close()
			return
		}
		ch <- cc
	}()
	return sock, ch
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer l.Close()
	client, err = net.DialTCP("tcp", nil, l.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	require.NoError(t, l.SetDeadline(time.Now().Add(step)))
	server, err = l.AcceptTCP()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

func sendHandoff(t *testing.T, ctl *control.Conn, h control.Handoff, pre []byte, f interface {
	SyscallConn() (syscall.RawConn, error)
}) {
	t.Helper()
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { serr = ctl.Send(control.TypeHandoff, h, pre, int(fd), time.Second) }))
	require.NoError(t, serr)
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// Accept closes and acknowledges as expired a hand-off past its deadline,
// refuses one whose descriptor is not a TCP socket, and returns the next
// good one; no descriptor is left behind.
func TestAcceptSkipsExpiredAndUnusableHandoffs(t *testing.T) {
	sock, ctls := fakeDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	logs := &testutil.Buffer{}
	ln, err := worker.Listen(ctx, []string{"net.tcp://+:9/x/"}, worker.Options{ControlSocket: sock, MaxInflight: 3, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ctl := <-ctls
	require.NotNil(t, ctl)
	t.Cleanup(func() { ctl.Close() })
	assert.Equal(t, 3, ln.Registered().MaxInflight)

	_, staleSrv := tcpPair(t)
	client, freshSrv := tcpPair(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	before := fdCount(t)

	future := time.Now().Add(time.Minute).UnixNano()
	sendHandoff(t, ctl, control.Handoff{ID: 1, Deadline: time.Now().Add(-time.Second).UnixNano()}, []byte("old"), staleSrv)
	sendHandoff(t, ctl, control.Handoff{ID: 2, Deadline: future}, []byte("pipe"), w)
	sendHandoff(t, ctl, control.Handoff{ID: 3, Route: "net.tcp://+:9/x/", Via: "net.tcp://h:9/x/y", Deadline: future}, []byte("pre-"), freshSrv)

	c := accept(t, ln)
	assert.EqualValues(t, 3, c.ID())
	assert.Equal(t, "net.tcp://h:9/x/y", c.Via())
	assert.Equal(t, "net.tcp://+:9/x/", c.Route())
	_, err = client.Write([]byte("socket"))
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(step)))
	got := make([]byte, len("pre-socket"))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "pre-socket", string(got))

	require.NoError(t, ctl.SetDeadline(time.Now().Add(step)))
	var acks []control.Ack
	for range 3 {
		m, err := ctl.Recv()
		require.NoError(t, err)
		require.Equal(t, control.TypeAck, m.Type)
		var a control.Ack
		require.NoError(t, m.Unmarshal(&a))
		acks = append(acks, a)
	}
	assert.Equal(t, control.Ack{ID: 1, Expired: true}, acks[0])
	assert.EqualValues(t, 2, acks[1].ID)
	assert.NotEmpty(t, acks[1].Refused, "a descriptor that is not a TCP socket is refused")
	assert.Equal(t, control.Ack{ID: 3}, acks[2])

	require.NoError(t, c.Close())
	assert.Equal(t, before, fdCount(t), "the worker closed every descriptor it received")
}

// ctx (and DialTimeout) bound a registration the daemon never answers.
func TestListenBoundedWhenDaemonNeverAnswers(t *testing.T) {
	sock := testutil.SocketPath(t)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	require.NoError(t, err)
	defer l.Close()
	held := make(chan net.Conn, 4)
	defer func() {
		l.Close()
		for c := range held {
			c.Close()
		}
	}()
	go func() {
		defer close(held)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c // accepted, never answered
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		opts worker.Options
	}{
		{"cancelled", ctx, worker.Options{ControlSocket: sock}},
		{"dial timeout", context.Background(), worker.Options{ControlSocket: sock, DialTimeout: 100 * time.Millisecond}},
	} {
		start := time.Now()
		ln, err := worker.Listen(tc.ctx, []string{"http://+:9/x/"}, tc.opts)
		assert.Nil(t, ln, tc.name)
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), sock, tc.name)
		assert.Less(t, time.Since(start), 2*time.Second, tc.name)
	}
}

// Conn errors look like a net.Conn's, so net/http keeps a keep-alive
// request's context alive and crypto/tls keeps its connection.
func TestConnBehavesLikeTCPForHTTPAndTLS(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("api", 1, e.route("http://+:%d/api/"))
	serveHTTP(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%v", r.Context().Err())
	}))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: step}
	for range 3 {
		body, err := get(t, client, "http://"+e.addr()+"/api/x")
		require.NoError(t, err)
		assert.Equal(t, "<nil>", body, "the request context is not cancelled")
	}

	tlsCfg, err := refworker.SelfSignedTLS("a.example")
	require.NoError(t, err)
	sln := e.listen("secure", 1, e.route("tls://a.example:%d/"))
	serveHTTP(t, tls.NewListener(sln, tlsCfg), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	str := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example", InsecureSkipVerify: true}}
	defer str.CloseIdleConnections()
	sclient := &http.Client{Transport: str, Timeout: step}
	for range 3 {
		_, err := get(t, sclient, "https://"+e.addr()+"/")
		require.NoError(t, err)
	}
	str.CloseIdleConnections()
	tr.CloseIdleConnections()
	s := e.balanced()
	assert.EqualValues(t, 2, s.Accepted, "one connection for the HTTP requests, one for the HTTPS ones")
}

// An Accept deadline works as net.TCPListener's: Accept times out, also
// when already waiting, and the hand-off that arrives later is still there
// for the next Accept.
func TestAcceptDeadline(t *testing.T) {
	e := startDaemon(t, nil)
	ln := e.listen("orders", 1, e.route("net.tcp://+:%d/orders/"))
	require.NoError(t, ln.SetDeadline(time.Now().Add(100*time.Millisecond)))
	t0 := time.Now()
	_, err := ln.Accept()
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.GreaterOrEqual(t, time.Since(t0), 90*time.Millisecond)

	require.NoError(t, ln.SetDeadline(time.Time{}))
	wait := acceptAsync(t, ln)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, ln.SetDeadline(time.Now()), "a deadline set while Accept waits ends it")
	_, err = wait()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	client, _ := dialNetTCP(t, e.addr(), e.via("/orders/"), nil)
	testutil.Eventually(t, step, func() bool { return e.daemon().Status().Inflight == 1 }, "hand-off sent")
	require.NoError(t, ln.SetDeadline(time.Time{}))
	c := accept(t, ln)
	require.NotNil(t, c)
	client.Close()
	c.Close()
	e.balanced()
}
