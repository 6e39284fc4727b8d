package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestEmptyGivesDefaults(t *testing.T) {
	want := Default()
	want.File = "empty.yaml"
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "--- # all defaults\n...\n", "~\n"} {
		c, err := Parse("empty.yaml", []byte(doc))
		require.NoError(t, err, "%q", doc)
		assert.Equal(t, want, c, "%q", doc)
	}
	cpus := runtime.NumCPU()
	assert.Equal(t, []string{"0.0.0.0", "::"}, want.ListenAddresses)
	assert.Equal(t, 12*cpus, want.ListenBacklog)
	assert.Equal(t, min(4*cpus, 100), want.MaxPendingAccepts)
	assert.Equal(t, 100, want.MaxPendingConnections)
	assert.Equal(t, 30*time.Second, want.ReceiveTimeout)
	assert.Equal(t, 60*time.Second, want.DispatchTimeout)
	assert.Equal(t, Reclaim, want.DispatchFailurePolicy)
	assert.Equal(t, 30*time.Second, want.QueueTimeout)
	assert.Equal(t, "root", want.AllowAccounts[0])
	assert.Empty(t, want.MetricsAddr)
	assert.Equal(t, "portshare.sock", filepath.Base(want.ControlSocket))
}

// The defaults must be valid on any machine, however many CPUs it has.
func TestDefaultsValidOnLargeMachines(t *testing.T) {
	for _, cpus := range []int{1, 2, 25, 26, 64, 512} {
		c := defaultFor(cpus)
		require.NoError(t, c.Validate(), "%d CPUs", cpus)
		assert.Equal(t, 12*cpus, c.ListenBacklog)
	}
}

const allKeys = `# every key, none at its default
control_socket: /srv/portshare/ctl.sock
listen_addresses: ["127.0.0.1", "::1"]
listen_backlog: 64
max_pending_accepts: 3
max_pending_connections: 50
receive_timeout: 250ms
dispatch_timeout: 2s
dispatch_failure_policy: compat
queue_timeout: 1m30s
grace_period: 0s
reregister_backoff: 5s
allow_accounts: [root, "uid:1000", "group:adm", "gid:4"]
metrics_addr: 127.0.0.1:9090
max_http_head: 4096
log_level: debug
`

func TestEveryKeyParsed(t *testing.T) {
	c, err := Parse("all.yaml", []byte(allKeys))
	require.NoError(t, err)
	assert.Equal(t, Config{
		File:                  "all.yaml",
		ControlSocket:         "/srv/portshare/ctl.sock",
		ListenAddresses:       []string{"127.0.0.1", "::1"},
		ListenBacklog:         64,
		MaxPendingAccepts:     3,
		MaxPendingConnections: 50,
		ReceiveTimeout:        250 * time.Millisecond,
		DispatchTimeout:       2 * time.Second,
		DispatchFailurePolicy: Compat,
		QueueTimeout:          90 * time.Second,
		GracePeriod:           0,
		ReregisterBackoff:     5 * time.Second,
		AllowAccounts:         []string{"root", "uid:1000", "group:adm", "gid:4"},
		MetricsAddr:           "127.0.0.1:9090",
		MaxHTTPHead:           4096,
		LogLevel:              "debug",
	}, c)
	// A key added to the parser must be added to this test too.
	assert.Equal(t, Keys(), topKeys(t, allKeys))
}

// The example in the docs must parse and show every key.
func TestExampleConfigHasEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "portshare.example.yaml")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = Load(path)
	require.NoError(t, err)
	assert.ElementsMatch(t, Keys(), topKeys(t, string(data)))
}

func topKeys(t *testing.T, doc string) []string {
	t.Helper()
	var m map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(doc), &m))
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portshare.yaml")
	require.NoError(t, os.WriteFile(path, []byte("listen_backlog: 7\n"), 0o600))
	c, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, 7, c.ListenBacklog)
	assert.Equal(t, path, c.File)

	_, err = Load(path + ".missing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+".missing")

	require.NoError(t, os.WriteFile(path, []byte("\nlisten_backlog: x\n"), 0o600))
	_, err = Load(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+":2: listen_backlog:")
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"unknown key", "listen_backlog: 5\nlisten_port: 80\n",
			[]string{`c.yaml:2: unknown key "listen_port"`, "known keys: " + strings.Join(Keys(), ", ")}},
		{"unknown key in a non-key position", "[a]: 1\n", []string{"c.yaml:1: unknown key"}},
		{"string for int", "listen_backlog: \"12\"\n", []string{"c.yaml:1: listen_backlog: want an integer", `"12"`}},
		{"word for int", "\n\nmax_pending_connections: many\n", []string{"c.yaml:3: max_pending_connections: want an integer", `"many"`}},
		{"list for int", "listen_backlog: [1]\n", []string{"c.yaml:1: listen_backlog: want an integer, got a list"}},
		{"list for string", "control_socket: [a, b]\n", []string{"c.yaml:1: control_socket: want a string, got a list"}},
		{"mapping for string", "metrics_addr:\n  host: x\n", []string{"c.yaml:2: metrics_addr: want a string, got a mapping"}},
		{"int for string", "log_level: 3\n", []string{"c.yaml:1: log_level: want a string", `"3"`}},
		{"empty string", "control_socket: \"\"\n", []string{"c.yaml:1: control_socket: must not be empty"}},
		{"null for string", "control_socket:\n", []string{"c.yaml:1: control_socket: want a string"}},
		{"string for list", "listen_addresses: 0.0.0.0\n", []string{"c.yaml:1: listen_addresses: want a list"}},
		{"list in list", "allow_accounts:\n  - root\n  - [x]\n", []string{"allow_accounts", "line 3: want a string"}},
		{"bad address", "listen_addresses: [\"0.0.0.0\", localhost]\n", []string{"c.yaml:1: listen_addresses", `"localhost" is not an IP address`}},
		{"bad account", "allow_accounts: [\"uid:x\"]\n", []string{"c.yaml:1: allow_accounts", `"uid:x"`}},
		{"bad policy", "dispatch_failure_policy: lenient\n", []string{"c.yaml:1: dispatch_failure_policy: want reclaim or compat", `"lenient"`}},
		{"bad log level", "log_level: loud\n", []string{"c.yaml:1: log_level:", `"loud"`}},
		{"duration without unit", "receive_timeout: 30\n", []string{"c.yaml:1: receive_timeout: want a duration such as 30s", `"30"`}},
		{"bad duration", "dispatch_timeout: soon\n", []string{"c.yaml:1: dispatch_timeout: want a duration", `"soon"`}},
		{"list for duration", "queue_timeout: [1s]\n", []string{"c.yaml:1: queue_timeout: want a duration"}},
		{"zero timeout", "receive_timeout: 0s\n", []string{"c.yaml:1: receive_timeout: must be at least 1ms"}},
		{"negative grace", "grace_period: -1s\n", []string{"c.yaml:1: grace_period: must be at least 0s"}},
		{"zero backlog", "listen_backlog: 0\n", []string{"c.yaml:1: listen_backlog: want an integer from 1 to 1048576", `"0"`}},
		{"negative connections", "max_pending_connections: -5\n", []string{"c.yaml:1: max_pending_connections: want an integer from 1"}},
		{"too many accepts", "max_pending_accepts: 5000\nmax_pending_connections: 10000\n", []string{"c.yaml:1: max_pending_accepts: want an integer from 1 to 4096"}},
		{"huge int", "listen_backlog: 99999999999999999999\n", []string{"c.yaml:1: listen_backlog: want an integer", `"99999999999999999999"`}},
		{"small http head", "max_http_head: 100\n", []string{"c.yaml:1: max_http_head: want an integer from 512"}},
		{"duplicate key", "listen_backlog: 5\nlog_level: info\nlisten_backlog: 6\n", []string{`c.yaml:3: key "listen_backlog" given twice (first on line 1)`}},
		{"bad YAML", "listen_backlog: 5\nlisten_addresses: [\"::\"\n", []string{"c.yaml: bad YAML", "did not find expected"}},
		{"tab indent", "\tlisten_backlog: 5\n", []string{"c.yaml: bad YAML"}},
		{"second document", "listen_backlog: 5\n---\nlisten_backlog: 6\n", []string{"c.yaml:2: more than one YAML document"}},
		{"empty second document", "listen_backlog: 5\n---\n", []string{"c.yaml:2: more than one YAML document"}},
		{"bad YAML in a second document", "listen_backlog: 5\n---\n[unclosed\n", []string{"c.yaml: bad YAML"}},
		{"not a mapping", "- listen_backlog\n", []string{"c.yaml:1: want a mapping of keys"}},
		{"accepts above connections", "max_pending_connections: 4\nmax_pending_accepts: 8\n",
			[]string{"c.yaml:2: max_pending_accepts (8) must not exceed max_pending_connections (4)"}},
		{"default accepts above connections", "\nmax_pending_connections: 1\n",
			[]string{"c.yaml:2: max_pending_accepts (", ") must not exceed max_pending_connections (1)"}},
		{"no listen address", "log_level: info\nlisten_addresses: []\n", []string{"c.yaml:2: listen_addresses must name at least one address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tc.doc))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Equal(t, Config{}, c, "no configuration comes with an error")
		})
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.MaxPendingAccepts, c.MaxPendingConnections = 5, 4
	require.EqualError(t, c.Validate(), "config: max_pending_accepts (5) must not exceed max_pending_connections (4): set both")
	c = Default()
	c.File, c.ListenAddresses = "x.yaml", nil
	require.EqualError(t, c.Validate(), "x.yaml: listen_addresses must name at least one address")
}

func TestDefaultControlSocketAndAccounts(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	accounts := Default().AllowAccounts
	if os.Geteuid() == 0 {
		assert.Equal(t, "/run/portshare/portshare.sock", DefaultControlSocket())
		assert.Equal(t, []string{"root"}, accounts)
		return
	}
	assert.Equal(t, filepath.Join(dir, "portshare.sock"), DefaultControlSocket())
	t.Setenv("XDG_RUNTIME_DIR", "")
	assert.Equal(t, filepath.Join(os.TempDir(), fmt.Sprintf("portshare-%d", os.Geteuid()), "portshare.sock"), DefaultControlSocket())
	assert.Equal(t, []string{"root", fmt.Sprintf("uid:%d", os.Getuid())}, accounts)
}

func TestValuesTheDaemonWouldRefuseAreConfigErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte("log_level: info\nallow_accounts: [root, no-such-user-portshare]\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "c.yaml:2: allow_accounts")
	assert.Contains(t, err.Error(), `no user "no-such-user-portshare"`)

	_, err = Parse("c.yaml", []byte("metrics_addr: notanaddr\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "c.yaml:1: metrics_addr: want host:port")

	_, err = Parse("c.yaml", []byte("max_pending_connections: 1\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "its default")
}

func TestJSONWritesDurationsAsText(t *testing.T) {
	c := Default()
	c.ReceiveTimeout = 1500 * time.Millisecond
	b, err := json.Marshal(c)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"receive_timeout":"1.5s"`)
	assert.Contains(t, string(b), `"dispatch_timeout":"1m0s"`)
	assert.Contains(t, string(b), `"listen_backlog":`)
	var back Config
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, c, back)
}

func TestListenAddressesAndDurationsThatWouldFailLater(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"listen_addresses: [\"fe80::1%eth0\"]\n", "zones are not supported"},
		{"listen_addresses: [\"0.0.0.0\", \"::ffff:0.0.0.0\"]\n", "names 0.0.0.0 twice"},
		{"dispatch_timeout: 100000h\n", "must be at most"},
	} {
		_, err := Parse("c.yaml", []byte(tc.doc))
		require.Error(t, err, tc.doc)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "c.yaml:1:")
	}
}

// TestIsInt: the keys IsInt names take an integer and refuse a quoted one;
// the others refuse an integer (ConfigYAML in scenarios writes integer
// keys bare and quotes the rest).
func TestIsInt(t *testing.T) {
	var ints []string
	for _, key := range Keys() {
		err := CheckValue(key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "1024"})
		assert.Equal(t, err == nil, IsInt(key), key)
		if IsInt(key) {
			ints = append(ints, key)
			assert.Error(t, CheckValue(key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "1024"}), key)
		}
	}
	assert.Equal(t, []string{"listen_backlog", "max_http_head", "max_pending_accepts", "max_pending_connections"}, ints)
	assert.False(t, IsInt("no_such_key"))
}
