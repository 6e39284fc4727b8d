package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/portshare/portshare/sharer/nmf"
	"github.com/portshare/portshare/sharer/testutil"
)

const step = 5 * time.Second

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("listen_backlog: 10\nreceive_timout: 3s\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", bad}, bad + `:2: unknown key "receive_timout"`},
		{[]string{"serve", "--nope"}, "unknown flag: --nope"},
		{[]string{"worker", "--name", "x", "--mode", "ftp", "--route", "net.tcp://+:1/"}, `mode "ftp" is not one of echo, http, https`},
		{[]string{"worker", "--name", "x", "--route", "ftp://x/"}, `scheme "ftp"`},
		{[]string{"worker", "--route", "net.tcp://+:1/"}, "--name is required"},
		{[]string{"status", "extra"}, "takes no arguments"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"worker", "--name", "x", "--listen", "127.0.0.1:0", "--route", "net.tcp://+:1/"}, "--listen serves a socket of its own"},
		{[]string{"worker", "--name", "x", "--mode", "http", "--route", "net.tcp://+:1/x/"}, "--mode http serves http:// routes"},
		{[]string{"demo", "--port", "99999"}, "--port must be"},
	} {
		code, _, errs := cli(tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "%v", tc.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)
	}
}

func TestRuntimeErrorsExit1(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errs := cli("status", "--control-socket", sock)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no port-sharing daemon at "+sock)
	code, _, errs = cli("worker", "--control-socket", sock, "--name", "w", "--route", "net.tcp://+:9/x/")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "is 'portshare serve' running?")
}

func TestVersion(t *testing.T) {
	code, out, _ := cli("version")
	assert.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "portshare "), out)
}

func TestTwoWorkerProcessesShareAPortAndStatusJSON(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	e.worker("billing", "echo", e.route("net.tcp://+:%d/billing/"))
	for _, tc := range []struct{ path, want string }{{"/orders/a", "orders:m"}, {"/billing/", "billing:m"}} {
		got, err := testutil.NetTCPSession(e.addr(), e.via(tc.path), step, "m")
		require.NoError(t, err)
		assert.Equal(t, []string{tc.want}, got)
	}
	e.balanced() // the daemon reads the last acknowledgement a moment after the client is done
	code, out, _ := cli("status", "--json", "--control-socket", e.socket)
	require.Equal(t, 0, code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	routes := doc["routes"].([]any)
	require.Len(t, routes, 2)
	assert.Equal(t, e.route("net.tcp://+:%d/billing/"), routes[0].(map[string]any)["uri"])
	assert.Equal(t, "billing", routes[0].(map[string]any)["worker"])
	ledger := doc["ledger"].(map[string]any)
	for _, k := range []string{"accepted", "open", "dispatched", "no_route", "protocol_failure", "receive_timeout",
		"queue_full", "queue_timeout", "dispatch_timeout", "dispatch_error", "shutdown"} {
		assert.Contains(t, ledger, k)
	}
	assert.EqualValues(t, 2, ledger["dispatched"])

	code, out, _ = cli("status", "--control-socket", e.socket)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "net.tcp://+:")
	assert.Contains(t, out, "ledger: accepted 2")
}

func TestSIGTERMDrainsAndExits0(t *testing.T) {
	e := startEnv(t, "")
	w := e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	silent, err := net.Dial("tcp", e.addr())
	require.NoError(t, err)
	defer silent.Close()
	testutil.Eventually(t, step, func() bool { return e.status().Ledger.Accepted == 1 }, "silent client accepted")
	e.daemon.Signal(syscall.SIGTERM)
	require.Equal(t, 0, e.daemon.Wait(10*time.Second))
	assert.Contains(t, e.daemon.Output(), "ledger.shutdown=1")
	// The worker keeps running, waiting for a daemon to come back.
	time.Sleep(100 * time.Millisecond)
	assert.False(t, w.Exited())
}

func TestWorkersReregisterAfterDaemonRestart(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	e.worker("api", "http", e.route("http://+:%d/api/"))
	e.daemon.Signal(syscall.SIGKILL) // a crash: the socket file stays behind
	e.daemon.Wait(step)
	e.startDaemon() // replaces the stale socket
	testutil.Eventually(t, 10*time.Second, func() bool { return len(e.status().Routes) == 2 }, "workers re-registered")
	got, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "again")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:again"}, got)
}

func TestSecondDaemonOnSameSocketRefused(t *testing.T) {
	e := startEnv(t, "")
	code, _, errs := cli("serve", "--config", e.cfg)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "another portshare daemon is serving it")
}

func TestDaemonFDsFlatAfter5000Handoffs(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 sessions")
	}
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	session := func() {
		_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x")
		require.NoError(t, err)
	}
	for range 50 { // warm up: metrics, pools, runtime threads
		session()
	}
	e.balanced()
	base := testutil.FDCount(t, e.daemon.PID())
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 1250 {
				if _, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x"); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	st := e.balanced()
	assert.EqualValues(t, 5050, st.Ledger.Outcomes["dispatched"])
	testutil.Eventually(t, step, func() bool { return testutil.FDCount(t, e.daemon.PID()) <= base }, "daemon fds back to %d, now %d", base, testutil.FDCount(t, e.daemon.PID()))
}

func TestKilledWorkerWithHandoffsInFlight(t *testing.T) {
	e := startEnv(t, "dispatch_failure_policy: compat\n")
	_, base := e.servedOnce("warm", "/warm/")

	hang := testutil.Start(t, nil, "test-worker", "hang", e.socket, "orders", "1", e.route("net.tcp://+:%d/orders/"))
	hang.WaitOutput(t, "registered", step)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), 10*time.Second)
			errs <- err
		}()
	}
	testutil.Eventually(t, step, func() bool { st := e.status(); return st.Inflight == 1 && st.Queued == 2 }, "1 in flight, 2 queued")
	hang.Signal(syscall.SIGKILL)
	dispatchFailed := 0
	for range 3 {
		err := <-errs
		require.Error(t, err, "every client is answered or closed")
		if fe := (*nmf.FaultError)(nil); errors.As(err, &fe) && fe.Name == nmf.FaultConnectionDispatchFailed {
			dispatchFailed++
		}
	}
	assert.Equal(t, 1, dispatchFailed, "the hand-off in flight gets ConnectionDispatchFailed; the queued ones are aborted")
	st := e.balanced()
	assert.EqualValues(t, 3, st.Ledger.Outcomes["dispatch_error"])
	testutil.Eventually(t, step, func() bool { return testutil.FDCount(t, e.daemon.PID()) <= base+1 }, "daemon fds back to baseline %d (+1 for the port), now %d", base, testutil.FDCount(t, e.daemon.PID()))
}

func TestUIDOutsideAllowAccountsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a worker as nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	e := startEnv(t, "") // allow_accounts: only our uid
	// Let nobody reach the socket and run a copy of the test binary.
	require.NoError(t, os.Chmod(e.dir, 0o755))
	require.NoError(t, os.Chmod(e.socket, 0o666))
	binDir, err := os.MkdirTemp("", "psbin")
	require.NoError(t, err)
	defer os.RemoveAll(binDir)
	require.NoError(t, os.Chmod(binDir, 0o755))
	bin := filepath.Join(binDir, "portshare.test")
	data, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))

	cmd := testutil.ChildCommand(bin, "worker", "--control-socket", e.socket, "--name", "intruder", "--route", e.route("net.tcp://+:%d/x/"))
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	cmd.Dir = binDir
	done := make(chan struct{})
	var out []byte
	go func() { out, _ = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("worker as nobody did not exit")
	}
	assert.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "is not allowed to register")
	assert.Contains(t, string(out), "allow_accounts in "+e.cfg)
	assert.Contains(t, string(out), `"nobody"`)
	assert.Empty(t, e.status().Routes)

	// Allowed after the fix the message names, and a SIGHUP.
	writeConfig(t, e.dir, e.socket, fmt.Sprintf("allow_accounts: [\"uid:%d\", nobody]\n", os.Getuid()))
	e.daemon.Signal(syscall.SIGHUP)
	e.daemon.WaitOutput(t, "configuration reloaded", step)
	again := testutil.ChildCommand(bin, "worker", "--control-socket", e.socket, "--name", "intruder", "--route", e.route("net.tcp://+:%d/x/"))
	again.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	again.Dir = binDir
	require.NoError(t, again.Start())
	defer func() { again.Process.Kill(); again.Wait() }()
	testutil.Eventually(t, 10*time.Second, func() bool { return len(e.status().Routes) == 1 }, "nobody registered after SIGHUP")
}

func TestMetricsUseSpecNames(t *testing.T) {
	port := testutil.FreePort(t)
	e := startEnv(t, "metrics_addr: 127.0.0.1:"+strconv.Itoa(port)+"\n")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x")
	require.NoError(t, err)
	_, err = testutil.NetTCPSession(e.addr(), e.via("/none/"), step)
	require.Error(t, err)
	resp, err := (&http.Client{Timeout: step}).Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		"portshare_connections_accepted_total 2",
		"portshare_connections_dispatched_total 1",
		`portshare_dispatch_failures_total{reason="no_route"} 1`,
		`portshare_dispatch_failures_total{reason="timeout"} 0`,
		"portshare_registrations_active 1",
		"portshare_uris_registered_total 1",
		"portshare_uris_unregistered_total 0",
		"portshare_pending_connections",
		"portshare_dispatch_duration_seconds_bucket",
		"portshare_protocol_failures_total",
		fmt.Sprintf(`portshare_listen_queue{address="127.0.0.1:%d"} 0`, e.port),
		fmt.Sprintf(`portshare_listen_backlog{address="127.0.0.1:%d"} 256`, e.port),
	} {
		assert.Contains(t, text, want)
	}
}

func TestSIGHUPReloadsLiveLimits(t *testing.T) {
	e := startEnv(t, "")
	writeConfig(t, e.dir, e.socket, "max_pending_connections: 7\ndispatch_failure_policy: compat\n")
	e.daemon.Signal(syscall.SIGHUP)
	e.daemon.WaitOutput(t, "configuration reloaded", step)
	st := e.status()
	assert.Equal(t, 7, st.Config.MaxPendingConnections, "live")
	assert.Equal(t, "reclaim", st.Policy, "needs a restart: kept")
	assert.Contains(t, e.daemon.Output(), "key=dispatch_failure_policy")
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

func TestWorkerOutOfDescriptorsRefusesHandoffAtOnce(t *testing.T) {
	e := startEnv(t, "dispatch_timeout: 30s\n")
	w, _ := e.servedOnce("orders", "/orders/")
	var old unix.Rlimit
	require.NoError(t, unix.Prlimit(w.PID(), unix.RLIMIT_NOFILE, nil, &old))
	lim := unix.Rlimit{Cur: 3, Max: old.Max} // no new descriptor fits below 3
	require.NoError(t, unix.Prlimit(w.PID(), unix.RLIMIT_NOFILE, &lim, nil))

	start := time.Now()
	_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x")
	var fe *nmf.FaultError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, nmf.FaultServerTooBusy, fe.Name)
	assert.Less(t, time.Since(start), 5*time.Second, "answered without waiting for dispatch_timeout")
	w.WaitOutput(t, "MSG_CTRUNC", step) // its stderr arrives through a pipe

	require.NoError(t, unix.Prlimit(w.PID(), unix.RLIMIT_NOFILE, &old, nil))
	got, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "back")
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:back"}, got)
	st := e.balanced()
	assert.EqualValues(t, 1, st.Ledger.Outcomes["dispatch_error"])
	assert.EqualValues(t, 2, st.Ledger.Outcomes["dispatched"])
}

// listenAddr starts a reference worker on a socket of its own and returns
// its address.
func listenAddr(t testing.TB, mode string) string {
	w := testutil.Start(t, nil, "worker", "--listen", "127.0.0.1:0", "--name", "solo", "--mode", mode)
	w.WaitOutput(t, "listening on ", step)
	out := w.Output()
	return strings.Fields(out[strings.Index(out, "listening on ")+len("listening on "):])[0]
}

func TestReferenceWorkerOnASocketOfItsOwn(t *testing.T) {
	got, err := testutil.NetTCPSession(listenAddr(t, "echo"), "net.tcp://localhost/any/", step, "a", "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"solo:a", "solo:b"}, got)

	for _, mode := range []string{"http", "https"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		hc := &http.Client{Timeout: step, Transport: tr}
		resp, err := hc.Post(mode+"://"+listenAddr(t, mode)+"/p/q?x=1", "text/plain", strings.NewReader("body"))
		require.NoError(t, err, mode)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "solo", resp.Header.Get("X-Portshare-Worker"))
		assert.Equal(t, "solo POST /p/q\n", string(body))
	}
}
