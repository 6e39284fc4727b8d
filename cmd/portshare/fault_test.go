package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/sharer/testutil"
)

func TestFaultUsageErrors(t *testing.T) {
	for args, want := range map[string]string{
		"fault":                       "give at least one fault SPEC",
		"fault slow-accept:delay=1s":  "daemon faults are nofile, pause, restart",
		"fault pause:speed=2":         "the keys of pause are at, for",
		"fault restart":               "restart needs whoever runs the daemon",
		"fault pause --pid 999999999": "process 999999999",
	} {
		code, _, errs := cli(strings.Fields(args)...)
		if strings.Contains(args, "--pid") {
			assert.Equal(t, 1, code, args)
		} else {
			assert.Equal(t, 2, code, args)
		}
		assert.Contains(t, errs, want, args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)
	}
}

// `portshare fault pause` holds the daemon: a session started during the
// pause is served only when it ends.
func TestFaultPausesARunningDaemon(t *testing.T) {
	e := startEnv(t, "")
	e.worker("orders", "echo", e.route("net.tcp://+:%d/orders/"))
	var out, errs testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"fault", "--control-socket", e.socket, "pause:at=100ms,for=600ms"}, &out, &errs)
	}()
	testutil.Eventually(t, step, func() bool { return strings.Contains(out.String(), `"phase":"start"`) }, "paused: %s", errs.String())
	t0 := time.Now()
	_, err := testutil.NetTCPSession(e.addr(), e.via("/orders/"), step, "x")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(t0), 300*time.Millisecond, "served after the pause")
	require.Equal(t, 0, <-done, errs.String())
	ev, err := faults.ReadEvents(strings.NewReader(out.String()))
	require.NoError(t, err)
	require.Len(t, ev, 2)
	assert.Equal(t, faults.Start, ev[0].Phase)
	assert.Contains(t, ev[0].Detail, "SIGSTOP")
	assert.Equal(t, faults.End, ev[1].Phase)
}
