package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/config"
	"github.com/portshare/portshare/sharer/control"
	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/testutil"
	"github.com/portshare/portshare/sharer/worker"
)

const step = 5 * time.Second // bound of one client step

func TestTwoEchoWorkersRoutedByVia(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	h.echoWorker("billing", h.route("net.tcp://+:%d/billing/"))

	got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/Submit"), step, "a", "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:a", "orders:b"}, got)
	got, err = testutil.NetTCPSession(h.addr(), h.via("/Billing/x"), step, "c")
	require.NoError(t, err)
	assert.Equal(t, []string{"billing:c"}, got)

	s := h.balanced()
	assert.EqualValues(t, 2, s.Outcomes["dispatched"])
}

func TestStockWCFPreambleGetsPreambleAck(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("demo", h.route("net.tcp://+:%d/Demo"))
	c, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	via := h.via("/Demo")
	pre := append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, byte(len(via))}, via...)
	pre = append(pre, 0x03, 0x08, 0x0C)
	_, err = c.Write(pre)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x0B}, b)
}

func TestPreambleOneByteAtATimeRoutesTheSame(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	c, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	pre := nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: h.via("/orders/"), Encoding: nmf.EncodingBinarySession})
	for _, b := range pre[:len(pre)-1] {
		_, err := c.Write([]byte{b})
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	got, err := testutil.NetTCPOn(c, pre[len(pre)-1:], "x")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:x"}, got)
	h.balanced()
}

func TestNetTCPHTTPAndTLSShareOnePort(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	api := h.listen("api", 4, h.route("http://+:%d/api/"))
	h.serve(api, "api", refworker.HTTP)
	secure := h.listen("secure", 4, h.route("tls://a.example:%d/"))
	h.serve(secure, "secure", refworker.HTTPS)

	got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "m")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:m"}, got)

	hc := &http.Client{Timeout: step, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + h.addr() + "/api/items?x=1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "api", resp.Header.Get("X-Portshare-Worker"))
	assert.Equal(t, "api GET /api/items\n", string(body))

	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: step}, "tcp", h.addr(), &tls.Config{ServerName: "a.example", InsecureSkipVerify: true})
	require.NoError(t, err)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(step))
	_, err = tc.Write([]byte("GET /s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"))
	require.NoError(t, err)
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "secure GET /s\n", string(body))
	h.balanced()
}

func TestUnknownRoutes(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	h.serve(h.listen("api", 1, h.route("http://+:%d/api/")), "api", refworker.HTTP)

	_, err := testutil.NetTCPSession(h.addr(), h.via("/nothing/"), step)
	var fe *nmf.FaultError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultEndpointNotFound, fe.Name)

	// The exact bytes: 08 <len> http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound
	c, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	c.Write(nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: h.via("/x"), Encoding: nmf.EncodingBinarySession}))
	all, _ := io.ReadAll(c)
	uri := "http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound"
	assert.Equal(t, append([]byte{0x08, byte(len(uri))}, uri...), all)

	resp, err := (&http.Client{Timeout: step}).Get("http://" + h.addr() + "/other")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)

	s := h.balanced()
	assert.EqualValues(t, 3, s.Outcomes["no_route"])
}

func TestSilentClientHitsReceiveTimeoutWhileOthersAreServed(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.ReceiveTimeout = 400 * time.Millisecond })
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	silent, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer silent.Close()
	start := time.Now()
	for range 5 {
		got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "hi")
		require.NoError(t, err)
		assert.Equal(t, []string{"orders:hi"}, got)
	}
	silent.SetReadDeadline(time.Now().Add(step))
	_, err = silent.Read(make([]byte, 1))
	require.Error(t, err)
	assert.False(t, errors.Is(err, net.ErrClosed))
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, 350*time.Millisecond)
	s := h.balanced()
	assert.EqualValues(t, 1, s.Outcomes["receive_timeout"])
	assert.EqualValues(t, 5, s.Outcomes["dispatched"])
}

func TestBadPreambles(t *testing.T) {
	for _, policy := range []config.Policy{config.Reclaim, config.Compat} {
		t.Run(string(policy), func(t *testing.T) {
			h := startDaemon(t, func(c *config.Config) { c.DispatchFailurePolicy = policy })
			h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
			c, err := net.Dial("tcp", h.addr())
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(step))
			c.Write([]byte{0x00, 0x01, 0x00, 0x01, 0x03}) // simplex mode
			name, err := testutil.ReadFault(c)
			if policy == config.Reclaim {
				require.NoError(t, err)
				assert.Equal(t, nmf.FaultUnsupportedMode, name)
			} else {
				assert.Error(t, err, "compat aborts without a fault")
			}
			s := h.balanced()
			assert.EqualValues(t, 1, s.Outcomes["protocol_failure"])
		})
	}
}

func TestConflictingRouteRefusedSameServiceShares(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	_, err := worker.Listen(context.Background(), []string{h.route("net.tcp://+:%d/ORDERS")}, worker.Options{ControlSocket: h.socket, Name: "thief"})
	var ce *control.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, control.CodeConflict, ce.Code)
	assert.Contains(t, ce.Message, "already registered")

	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/")) // same service: joins the pool
	st := h.d.Status()
	require.Len(t, st.Routes, 1)
	assert.Len(t, st.Routes[0].Workers, 2)
}

func TestNoDaemonGivesClearError(t *testing.T) {
	sock := testutil.SocketPath(t)
	_, err := worker.Listen(context.Background(), []string{"net.tcp://+:9/x/"}, worker.Options{ControlSocket: sock})
	require.ErrorIs(t, err, worker.ErrNoDaemon)
	assert.Contains(t, err.Error(), "no port-sharing daemon at "+sock)
	assert.Contains(t, err.Error(), "is 'portshare serve' running?")
}

// hung registers a worker that never calls Accept.
func (h *harness) hung(name string, credit int, routes ...string) *worker.Listener {
	return h.listen(name, credit, routes...)
}

func TestCompatDispatchTimeoutCascade(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.DispatchFailurePolicy = config.Compat
		c.DispatchTimeout = 200 * time.Millisecond
	})
	h.hung("slow", 5, h.route("net.tcp://+:%d/orders/"))

	start := time.Now()
	_, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step)
	var fe *nmf.FaultError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultConnectionDispatchFailed, fe.Name)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	assert.Contains(t, h.logs.String(), LeakedHandleMessage)

	// The worker was dropped, its route removed, and the port closed.
	testutil.Eventually(t, step, func() bool { return len(h.d.Status().Routes) == 0 }, "route removed")
	testutil.Eventually(t, step, func() bool {
		c, err := net.DialTimeout("tcp", h.addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "port closed")
	s := h.balanced()
	assert.EqualValues(t, 1, s.Outcomes["dispatch_timeout"])

	// It may come back only after the back-off.
	_, err = worker.Listen(context.Background(), []string{h.route("net.tcp://+:%d/orders/")}, worker.Options{ControlSocket: h.socket, Name: "slow"})
	var ce *control.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, control.CodeBackoff, ce.Code)
}

func TestCompatOneHandoffInFlightAndQueueNeverExpires(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.DispatchFailurePolicy = config.Compat
		c.QueueTimeout = 100 * time.Millisecond // ignored by compat
	})
	ln := h.hung("w", 8, h.route("net.tcp://+:%d/orders/"))
	assert.Equal(t, 1, ln.Registered().MaxInflight)
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", h.addr())
		require.NoError(t, err)
		defer c.Close()
		c.Write(nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: h.via("/orders/"), Encoding: nmf.EncodingBinarySession}))
		conns = append(conns, c)
	}
	testutil.Eventually(t, step, func() bool { st := h.d.Status(); return st.Inflight == 1 && st.Queued == 2 }, "1 in flight, 2 queued")
	time.Sleep(300 * time.Millisecond)
	st := h.d.Status()
	assert.Equal(t, 2, st.Queued, "compat queues never expire")
	// Now the worker accepts: all three are served in turn.
	h.serve(ln, "w", refworker.Echo)
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(step))
		got, err := testutil.NetTCPOn(c, nil, "q")
		require.NoError(t, err)
		assert.Equal(t, []string{"w:q"}, got)
	}
	s := h.balanced()
	assert.EqualValues(t, 3, s.Outcomes["dispatched"])
}

func TestReclaimDispatchTimeoutKeepsWorker(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.DispatchTimeout = 200 * time.Millisecond
		c.QueueTimeout = 300 * time.Millisecond
	})
	ln := h.hung("slow", 1, h.route("net.tcp://+:%d/orders/"))

	start := time.Now()
	_, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step)
	var fe *nmf.FaultError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultServerTooBusy, fe.Name)
	assert.Less(t, time.Since(start), 2*time.Second, "no client waits past the timeouts")
	assert.Contains(t, h.logs.String(), LeakedHandleMessage)

	// The credit is still owed: the next client waits in the queue and expires.
	_, err = testutil.NetTCPSession(h.addr(), h.via("/orders/"), step)
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultServerTooBusy, fe.Name)

	// The worker is still registered; once it accepts (dropping the expired
	// hand-off), its credit returns and clients are served.
	require.Len(t, h.d.Status().Workers, 1)
	h.serve(ln, "slow", refworker.Echo)
	testutil.Eventually(t, step, func() bool {
		got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "ok")
		return err == nil && len(got) == 1
	}, "served after the worker recovers")
	s := h.balanced()
	assert.EqualValues(t, 1, s.Outcomes["dispatch_timeout"])
	assert.EqualValues(t, 1, s.Outcomes["queue_timeout"])
}

func TestReclaimQueueFullAnswersServerTooBusy(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.MaxPendingConnections = 2
		c.MaxPendingAccepts = 1
		c.QueueTimeout = 5 * time.Second
		c.DispatchTimeout = 5 * time.Second
	})
	h.hung("w", 1, h.route("http://+:%d/"))
	var conns []net.Conn
	for range 3 { // one in flight, two queued: the route's queue is full
		c, err := net.Dial("tcp", h.addr())
		require.NoError(t, err)
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		conns = append(conns, c)
		time.Sleep(50 * time.Millisecond)
	}
	testutil.Eventually(t, step, func() bool { st := h.d.Status(); return st.Inflight == 1 && st.Queued == 2 }, "1 in flight, 2 queued")
	c, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.EqualValues(t, 1, h.d.Ledger().Outcomes["queue_full"])
	for _, c := range conns {
		c.Close()
	}
}

func TestReclaimGracePeriodAnswersEndpointUnavailable(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.GracePeriod = 500 * time.Millisecond })
	ln := h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	ln.Close()
	testutil.Eventually(t, step, func() bool { st := h.d.Status(); return len(st.Routes) == 1 && st.Routes[0].State == "grace" }, "route in grace")
	_, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step)
	var fe *nmf.FaultError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultEndpointUnavailable, fe.Name)
	// After the grace period the port closes.
	testutil.Eventually(t, step, func() bool {
		c, err := net.DialTimeout("tcp", h.addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "port closed after grace")
	h.balanced()
}

func TestCrashedWorkerHandoffsAreReclaimed(t *testing.T) {
	h := startDaemon(t, nil)
	route := h.route("net.tcp://+:%d/orders/")
	hang := testutil.Start(t, nil, "hang", h.socket, "orders", "4", route)
	hang.WaitOutput(t, "registered", step)

	// Four sessions are handed to the hung process and wait there.
	type result struct {
		got []string
		err error
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), 10*time.Second, "x")
			results <- result{got, err}
		}()
	}
	testutil.Eventually(t, step, func() bool { return h.d.Status().Inflight == 4 }, "4 hand-offs in flight")

	// A healthy process of the same service joins; the hung one is killed.
	h.echoWorker("orders", route)
	hang.Signal(9)
	hang.Wait(step)
	for range 4 {
		r := <-results
		require.NoError(t, r.err)
		assert.Equal(t, []string{"orders:x"}, r.got)
	}
	s := h.balanced()
	assert.EqualValues(t, 4, s.Outcomes["dispatched"])
}

func TestWorkerReregistersAfterDaemonRestart(t *testing.T) {
	cfg := testutil.LoopbackConfig(t)
	port := testutil.FreePort(t)
	h := startDaemonWith(t, cfg, port)
	ln := h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	_, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "1")
	require.NoError(t, err)
	h.stop()

	h2 := startDaemonWith(t, cfg, port)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(h2.d.Status().Routes) == 1 }, "worker re-registered")
	got, err := testutil.NetTCPSession(h2.addr(), h2.via("/orders/"), step, "2")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:2"}, got)
	_ = ln
}

func TestLedgerBalancesUnderConcurrentMixedLoad(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.ReceiveTimeout = 300 * time.Millisecond })
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "x")
			case 1:
				testutil.NetTCPSession(h.addr(), h.via("/none/"), step)
			case 2:
				if c, err := net.Dial("tcp", h.addr()); err == nil {
					c.Write([]byte{0x00, 0x01})
					time.Sleep(400 * time.Millisecond)
					c.Close()
				}
			case 3:
				if c, err := net.Dial("tcp", h.addr()); err == nil {
					c.Write([]byte("\xff garbage"))
					c.Close()
				}
			}
		})
	}
	wg.Wait()
	s := h.balanced()
	assert.EqualValues(t, 40, s.Accepted)
	assert.EqualValues(t, 10, s.Outcomes["dispatched"])
	assert.EqualValues(t, 10, s.Outcomes["no_route"])
	assert.EqualValues(t, 10, s.Outcomes["receive_timeout"])
	assert.EqualValues(t, 10, s.Outcomes["protocol_failure"])
	assert.True(t, strings.Contains(h.logs.String(), "listening"))
}

// rawRegister registers over a bare control connection.
func rawRegister(t *testing.T, socket, name string, routes ...string) *control.Conn {
	cc, err := control.Dial(socket, step)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	cc.SetDeadline(time.Now().Add(step))
	require.NoError(t, cc.Send(control.TypeRegister, control.Register{Name: name, Routes: routes, MaxInflight: 1}, nil, -1, step))
	m, err := cc.Recv()
	require.NoError(t, err)
	require.Equal(t, control.TypeRegistered, m.Type, "%s", m.Header)
	return cc
}

func TestWorkerMayUnregisterOnlyItsOwnRoutes(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.GracePeriod = 0 })
	mine, theirs := h.route("net.tcp://+:%d/mine/"), h.route("net.tcp://+:%d/theirs/")
	h.echoWorker("them", theirs)
	cc := rawRegister(t, h.socket, "me", mine)

	require.NoError(t, cc.Send(control.TypeUnregister, control.Unregister{Routes: []string{theirs}}, nil, -1, step))
	m, err := cc.Recv()
	require.NoError(t, err)
	require.Equal(t, control.TypeError, m.Type)
	var e control.Error
	require.NoError(t, m.Unmarshal(&e))
	assert.Equal(t, control.CodeNotOwner, e.Code)

	require.NoError(t, cc.Send(control.TypeUnregister, control.Unregister{Routes: []string{mine}}, nil, -1, step))
	m, err = cc.Recv()
	require.NoError(t, err)
	assert.Equal(t, control.TypeUnregistered, m.Type)
	st := h.d.Status()
	require.Len(t, st.Routes, 1)
	assert.Equal(t, theirs, st.Routes[0].URI)
}

func TestBadControlInputIsRefusedAndHarmless(t *testing.T) {
	h := startDaemon(t, nil)
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	for _, msg := range [][]byte{
		{},                 // empty datagram
		{9, 1, 0, 0, 0, 0}, // another protocol version
		{1, byte(control.TypeRegister), 0, 0, 0, 200, '{'}, // header longer than the message
		append([]byte{1, byte(control.TypeRegister), 0, 0, 0, 5}, "{bad}"...),
		append([]byte{1, byte(control.TypeAck), 0, 0, 0, 2}, "{}"...), // ack before registering
	} {
		c, err := net.Dial("unixpacket", h.socket)
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(step))
		c.Write(msg)
		buf := make([]byte, 1024)
		c.Read(buf) // an error reply or EOF; either way the daemon closes
		c.Close()
	}
	got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "still")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:still"}, got)
	for _, bad := range []string{"ftp://x/", "http://+/" + strings.Repeat("a", 2039)} {
		_, err = worker.Listen(context.Background(), []string{bad}, worker.Options{ControlSocket: h.socket})
		var ce *control.Error
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, control.CodeBadRoute, ce.Code)
	}
	_, err = testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "alive")
	require.NoError(t, err)
}

// sendPreamble opens a connection and sends a duplex preamble for path.
func (h *harness) sendPreamble(path string) net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr())
	require.NoError(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write(nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: h.via(path), Encoding: nmf.EncodingBinarySession}))
	require.NoError(h.t, err)
	return c
}

func TestBrokenControlSocketNeverServesAConnectionTwice(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.DispatchTimeout = 5 * time.Second })
	ln := h.listen("w", 2, h.route("net.tcp://+:%d/orders/"))
	a, b := h.sendPreamble("/orders/"), h.sendPreamble("/orders/")
	testutil.Eventually(t, step, func() bool { return h.d.Status().Inflight == 2 }, "2 in flight")
	// As after a failed send: the daemon stops sending to the worker.
	h.d.mu.Lock()
	for _, w := range h.d.workers {
		h.d.breakLocked(w, errors.New("test"))
	}
	h.d.mu.Unlock()
	h.serve(ln, "w", refworker.Echo)
	for _, c := range []net.Conn{a, b} {
		got, err := testutil.NetTCPOn(c, nil, "x")
		require.NoError(t, err)
		assert.Equal(t, []string{"w:x"}, got)
	}
	s := h.balanced()
	assert.EqualValues(t, 2, s.Outcomes["dispatched"])
	// The worker re-registers and keeps serving.
	testutil.Eventually(t, step, func() bool {
		got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "again")
		return err == nil && len(got) == 1
	}, "served after re-registering")
}

func TestRegistrationNeverSeesAHandoffBeforeRegistered(t *testing.T) {
	h := startDaemon(t, nil)
	r := h.route("net.tcp://+:%d/orders/")
	h.echoWorker("svc", r)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				testutil.NetTCPSession(h.addr(), h.via("/orders/"), 3*time.Second, "x")
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for range 200 {
		l, err := worker.Listen(context.Background(), []string{r}, worker.Options{ControlSocket: h.socket, Name: "svc", MaxInflight: 100})
		require.NoError(t, err)
		l.Close()
	}
}

func TestIdleListenersDoNotStarveABusyOne(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.ListenAddresses = []string{"127.0.0.1", "127.0.0.2"}
		c.MaxPendingAccepts = 10
		c.MaxPendingConnections = 10
	})
	h.echoWorker("svc", h.route("net.tcp://+:%d/orders/"))
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 100 {
				_, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), 2*time.Second, "x")
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	s := h.balanced()
	assert.EqualValues(t, 600, s.Outcomes["dispatched"])
}

func TestPendingCapStopsAcceptingUntilReceiveTimeoutFreesSlots(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.MaxPendingConnections = 3
		c.MaxPendingAccepts = 1
		c.ReceiveTimeout = 500 * time.Millisecond
	})
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	t0 := time.Now()
	for range 5 {
		c, err := net.Dial("tcp", h.addr()) // the kernel completes every handshake
		require.NoError(t, err)
		defer c.Close()
	}
	// Three silent connections fill the gate (an accept is posted only while
	// connections + accepts outstanding < 3): the other two wait in the
	// kernel backlog, as SMSvcHost's do.
	testutil.Eventually(t, step, func() bool { return h.d.Ledger().Accepted == 3 }, "3 accepted")
	time.Sleep(200 * time.Millisecond)
	assert.EqualValues(t, 3, h.d.Ledger().Accepted, "accepting paused at max_pending_connections")
	st := h.d.Status()
	assert.Equal(t, 3, st.Pending)
	require.Len(t, st.Listen, 1)
	assert.Equal(t, ListenQueue{Address: h.addr(), Queued: 2, Backlog: testutil.LoopbackConfig(t).ListenBacklog}, st.Listen[0],
		"the other two wait in the kernel's accept queue")

	// A normal client waits behind them until receive_timeout frees slots.
	got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/"), step, "late")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:late"}, got)
	assert.GreaterOrEqual(t, time.Since(t0), 450*time.Millisecond, "served only after receive_timeout")
	s := h.balanced()
	assert.EqualValues(t, 5, s.Outcomes["receive_timeout"])
}

func TestControlSocketModeDirectoryAndIPv6(t *testing.T) {
	cfg := testutil.LoopbackConfig(t)
	cfg.ControlSocket = filepath.Join(filepath.Dir(cfg.ControlSocket), "made", "here", "ctl.sock")
	ipv6 := true
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		ipv6 = false
	} else {
		ln.Close()
		cfg.ListenAddresses = []string{"127.0.0.1", "::1"}
	}
	h := startDaemonWith(t, cfg, testutil.FreePort(t))
	fi, err := os.Stat(cfg.ControlSocket)
	require.NoError(t, err, "directory created")
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	if !ipv6 {
		t.Skip("no IPv6 loopback")
	}
	got, err := testutil.NetTCPSession(net.JoinHostPort("::1", strconv.Itoa(h.port)), fmt.Sprintf("net.tcp://[::1]:%d/orders/", h.port), step, "six")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:six"}, got)
}

func TestReclaimShutdownLeavesNoClientWaiting(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.DispatchTimeout = 500 * time.Millisecond })
	h.hung("stuck", 1, h.route("net.tcp://+:%d/orders/"))
	inflight, queued := h.sendPreamble("/orders/"), h.sendPreamble("/orders/")
	testutil.Eventually(t, step, func() bool { st := h.d.Status(); return st.Inflight == 1 && st.Queued == 1 }, "1 in flight, 1 queued")
	h.stop()
	for _, c := range []net.Conn{inflight, queued} {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		name, err := testutil.ReadFault(c)
		require.NoError(t, err, "the client is told, not left waiting")
		assert.Equal(t, nmf.FaultServerTooBusy, name)
	}
	s := h.d.Ledger()
	assert.EqualValues(t, 2, s.Outcomes["shutdown"])
	assert.Zero(t, s.Open)
}

func TestDepartedRouteDoesNotHideALiveParent(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.GracePeriod = 5 * time.Second })
	h.echoWorker("orders", h.route("net.tcp://+:%d/orders/"))
	sub := h.echoWorker("sub", h.route("net.tcp://+:%d/orders/sub/"))
	got, err := testutil.NetTCPSession(h.addr(), h.via("/orders/sub/x"), step, "a")
	require.NoError(t, err)
	assert.Equal(t, []string{"sub:a"}, got)

	sub.Close()
	testutil.Eventually(t, step, func() bool { return len(h.d.Status().Workers) == 1 }, "sub gone")
	got, err = testutil.NetTCPSession(h.addr(), h.via("/orders/sub/x"), step, "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:b"}, got, "the next match serves, as in http.sys")
	st := h.d.Status()
	require.Len(t, st.Routes, 2)
	assert.Equal(t, "grace", st.Routes[1].State)
	assert.Equal(t, "sub", st.Routes[1].Worker)
}

func TestHTTPRoutesOnTheCanonicalPath(t *testing.T) {
	h := startDaemon(t, nil)
	h.serve(h.listen("api", 4, h.route("http://+:%d/api/")), "api", refworker.HTTP)
	get := func(path string) int {
		c, err := net.Dial("tcp", h.addr())
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(step))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 404, get("/api/../secret"), "dot segments resolved before routing")
	assert.Equal(t, 200, get("/%61pi/x"), "unreserved escapes decoded")
	assert.Equal(t, 200, get("//api//x"))
	assert.Equal(t, 400, get("/api/%zz"))
	h.balanced()
}

func TestSlowHTTPHeadGets408(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) { c.ReceiveTimeout = 300 * time.Millisecond })
	h.serve(h.listen("api", 1, h.route("http://+:%d/")), "api", refworker.HTTP)
	c, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")) // and nothing more
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 408, resp.StatusCode)
	assert.EqualValues(t, 1, h.balanced().Outcomes["receive_timeout"])
}

func TestFullControlSocketIsBackPressureNotBreakage(t *testing.T) {
	h := startDaemon(t, func(c *config.Config) {
		c.DispatchTimeout = 10 * time.Second
		c.QueueTimeout = 10 * time.Second
		c.MaxPendingAccepts = 8
	})
	ln := h.hung("w", 60, h.route("http://+:%d/"))
	// Heads of ~7 KiB: the worker's socket buffer holds far fewer than 60.
	head := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 7000) + "\r\n\r\n"
	var conns []net.Conn
	for range 40 {
		c, err := net.Dial("tcp", h.addr())
		require.NoError(t, err)
		defer c.Close()
		c.Write([]byte(head))
		conns = append(conns, c)
	}
	testutil.Eventually(t, step, func() bool { st := h.d.Status(); return st.Inflight+st.Queued == 40 && st.Queued > 0 }, "all routed, some queued")
	assert.NotContains(t, h.logs.String(), "no more hand-offs", "the worker is not broken")
	// Once it accepts, it drains the rest.
	h.serve(ln, "w", refworker.HTTP)
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(step))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
	}
	assert.EqualValues(t, 40, h.balanced().Outcomes["dispatched"])
}

func TestControlSocketDirectoryOthersCanWriteIsRefused(t *testing.T) {
	cfg := testutil.LoopbackConfig(t)
	dir := filepath.Dir(cfg.ControlSocket)
	require.NoError(t, os.Chmod(dir, 0o777))
	_, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writable by others")

	require.NoError(t, os.Chmod(dir, 0o777|os.ModeSticky)) // sticky, as /tmp: others cannot replace our socket
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, d.Serve(ctx))
}
