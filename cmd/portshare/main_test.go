package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/portshare/portshare/sharer/daemon"
	"github.com/portshare/portshare/sharer/testutil"
)

func TestMain(m *testing.M) {
	testutil.RunChildIfRequested(childMain)
	goleak.VerifyTestMain(m)
}

// childMain runs the CLI, plus one test-only command: "test-worker MODE
// SOCKET NAME CREDIT ROUTE…" (testutil.WorkerMain).
func childMain(args []string) int {
	if len(args) > 0 && args[0] == "test-worker" {
		return testutil.WorkerMain(args[1:])
	}
	if os.Getenv(breakReclaimEnv) != "" && len(args) == 3 && args[0] == "serve" && args[1] == "--config" {
		if err := breakReclaim(args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return run(context.Background(), args, os.Stdout, os.Stderr)
}

// breakReclaimEnv makes this test binary, run as a daemon, a build with a
// regression: under reclaim, hand-offs time out after 300 ms whatever the
// configuration says, as a bug in reclaim's dispatch timer would. The
// regression gate's test runs the real gate against it.
const breakReclaimEnv = "PORTSHARE_TEST_BREAK_RECLAIM"

var dispatchTimeoutLine = regexp.MustCompile(`(?m)^dispatch_timeout: .*$`)

func breakReclaim(path string) error {
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(b, []byte(`dispatch_failure_policy: "reclaim"`)) {
		return err
	}
	b = dispatchTimeoutLine.ReplaceAll(b, []byte(`dispatch_timeout: "300ms"`))
	if !bytes.Contains(b, []byte(`dispatch_timeout: "300ms"`)) {
		b = append(b, "dispatch_timeout: \"300ms\"\n"...)
	}
	return os.WriteFile(path, b, 0o600)
}

// cli runs the CLI in-process and returns its exit code and output.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// env is a daemon child process on loopback.
type env struct {
	t      testing.TB
	dir    string
	socket string
	port   int
	cfg    string
	daemon *testutil.Proc
}

// writeConfig writes a daemon configuration for loopback tests: short
// timeouts, our own uid allowed; extra lines ("key: value\n") replace or
// add keys.
func writeConfig(t testing.TB, dir, socket, extra string) string {
	keys := []string{"control_socket", "listen_addresses", "listen_backlog", "max_pending_accepts", "receive_timeout", "dispatch_timeout", "queue_timeout", "allow_accounts"}
	vals := map[string]string{
		"control_socket": socket, "listen_addresses": `["127.0.0.1"]`, "listen_backlog": "256", "max_pending_accepts": "2",
		"receive_timeout": "2s", "dispatch_timeout": "2s", "queue_timeout": "2s", "allow_accounts": fmt.Sprintf(`["uid:%d"]`, os.Getuid()),
	}
	for _, line := range strings.Split(strings.TrimSpace(extra), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			if _, known := vals[k]; !known {
				keys = append(keys, k)
			}
			vals[k] = strings.TrimSpace(v)
		}
	}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, vals[k])
	}
	path := filepath.Join(dir, "portshare.yaml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

func startEnv(t *testing.T, extra string) *env {
	t.Helper()
	socket := testutil.SocketPath(t)
	e := &env{t: t, dir: filepath.Dir(socket), socket: socket, port: testutil.FreePort(t)}
	e.cfg = writeConfig(t, e.dir, socket, extra)
	e.startDaemon()
	return e
}

func (e *env) startDaemon() {
	e.t.Helper()
	e.daemon = testutil.Start(e.t, nil, "serve", "--config", e.cfg)
	e.daemon.WaitOutput(e.t, "portshare daemon serving", 10*time.Second)
}

func (e *env) route(format string) string { return fmt.Sprintf(format, e.port) }
func (e *env) addr() string               { return "127.0.0.1:" + strconv.Itoa(e.port) }
func (e *env) via(path string) string {
	return fmt.Sprintf("net.tcp://localhost:%d%s", e.port, path)
}

func (e *env) worker(name, mode string, routes ...string) *testutil.Proc {
	e.t.Helper()
	args := []string{"worker", "--control-socket", e.socket, "--name", name, "--mode", mode}
	for _, r := range routes {
		args = append(args, "--route", r)
	}
	p := testutil.Start(e.t, nil, args...)
	p.WaitOutput(e.t, "worker registered", 10*time.Second)
	return p
}

// fetchStatusOrNil returns the daemon's status, or nil if it does not answer.
func fetchStatusOrNil(socket string) *daemon.Status {
	raw, err := fetchStatus(socket)
	if err != nil {
		return nil
	}
	var st daemon.Status
	if json.Unmarshal(raw, &st) != nil {
		return nil
	}
	return &st
}

func (e *env) status() daemon.Status {
	e.t.Helper()
	code, out, errs := cli("status", "--json", "--control-socket", e.socket)
	require.Equal(e.t, 0, code, errs)
	var st daemon.Status
	require.NoError(e.t, json.Unmarshal([]byte(out), &st))
	return st
}

// balanced waits for the ledger to have no open connection and checks it.
func (e *env) balanced() daemon.Status {
	e.t.Helper()
	var st daemon.Status
	testutil.Eventually(e.t, 10*time.Second, func() bool { st = e.status(); return st.Ledger.Open == 0 }, "ledger open: %+v", st.Ledger)
	var sum uint64
	for _, v := range st.Ledger.Outcomes {
		sum += v
	}
	require.Equal(e.t, st.Ledger.Accepted, sum)
	return st
}

// servedOnce starts an echo worker for path, runs one session through it,
// waits for the ledger to settle, and returns the worker and the daemon's
// descriptor count then: a baseline with the port open.
func (e *env) servedOnce(name, path string) (*testutil.Proc, int) {
	e.t.Helper()
	w := e.worker(name, "echo", e.route("net.tcp://+:%d"+path))
	_, err := testutil.NetTCPSession(e.addr(), e.via(path), 5*time.Second, "x")
	require.NoError(e.t, err)
	e.balanced()
	return w, testutil.FDCount(e.t, e.daemon.PID())
}
