package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse: any input either parses into a valid configuration or fails
// with an error that names the file; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		allKeys,
		"listen_backlog: 5\n---\n[unclosed\n",
		"a: &x 1\nlisten_backlog: *x\n",
		"<<: {listen_backlog: 3}\n",
		"listen_addresses: [[a]]\n",
		"allow_accounts: [\"group:\"]\n",
		"max_pending_connections: 1\n",
		"? [a, b]\n: 1\n",
		"%YAML 1.2\n---\nlisten_backlog: !!int \"7\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "f.yaml"), "error does not name the file: %v", err)
			return
		}
		require.NoError(t, c.Validate())
		require.Equal(t, "f.yaml", c.File)
		require.Contains(t, []Policy{Reclaim, Compat}, c.DispatchFailurePolicy)
		require.NotEmpty(t, c.ControlSocket)
		for _, s := range c.AllowAccounts {
			_, err := ParseAccount(s)
			require.NoError(t, err)
		}
	})
}
