package testutil

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/portshare/portshare/sharer/config"
)

// LoopbackConfig is a daemon configuration for tests: its own control
// socket, loopback only, our uid allowed, and timeouts short enough for a
// test to see them expire.
func LoopbackConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.ControlSocket = SocketPath(t)
	cfg.ListenAddresses = []string{"127.0.0.1"}
	cfg.ListenBacklog = 128
	cfg.MaxPendingAccepts = 2
	cfg.ReceiveTimeout = 2 * time.Second
	cfg.DispatchTimeout = 2 * time.Second
	cfg.QueueTimeout = 2 * time.Second
	cfg.GracePeriod = 300 * time.Millisecond
	cfg.ReregisterBackoff = 500 * time.Millisecond
	cfg.AllowAccounts = []string{"uid:" + strconv.Itoa(os.Getuid())}
	return cfg
}
