package route

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"net.tcp://+:8808/orders/",
		"http://localhost:8808/api/",
		"tls://a.example:8443/",
		"net.tcp://[::1]:9000/x/",
		"HTTP://A.Example.:80/Caf\u00c9/%7E/",
		"net.tcp://[::ffff:1.2.3.4]/",
		"http://x:0080",
		"ftp://x/",
		"http://x/a?b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			require.Equal(t, URI{}, u)
			return
		}
		again, err := Parse(u.String())
		require.NoError(t, err, "Parse(%q).String() = %q", s, u.String())
		require.Equal(t, u, again)
		require.Equal(t, u.String(), again.String())
		var tab Table[int]
		require.NoError(t, tab.Insert(u, 1), "a parsed route can be inserted")
	})
}

// FuzzMatch matches a request against a fixed table plus a fuzzed route,
// which must then match its own host and path; and checks the
// allocation-free IPv6 parser against net/netip on the host.
func FuzzMatch(f *testing.F) {
	f.Add("net.tcp://+:8808/orders/", "a.example", "/orders/new?x")
	f.Add("net.tcp://[::1]:8808/x/", "0:0:0:0:0:0:0:1", "/X/y")
	f.Add("http://a.example:8808/", "[::ffff:1.2.3.4]", "//a/b#c")
	f.Add("tls://*:8443/", "", "")
	f.Add("http://x/a/", "A.Example.", "a/b/")
	base := []string{
		"net.tcp://+:8808/orders/",
		"net.tcp://a.example:8808/",
		"net.tcp://a.example:8808/billing/",
		"net.tcp://[::1]:8808/x/y/",
		"net.tcp://*:8808/billing/invoices/",
		"http://*:8808/",
		"tls://a.example:8443/",
	}
	f.Fuzz(func(t *testing.T, route, host, path string) {
		checkParseIPv6(t, host)
		tab := newTable(t, base...)
		for _, scheme := range []string{"net.tcp", "http", "tls", route} {
			for _, port := range []int{8808, 8443, 0} {
				if u, _, ok := tab.Match(scheme, host, port, path); ok {
					require.Equal(t, scheme, u.Scheme)
					require.Equal(t, port, u.Port)
				}
			}
		}

		u, err := Parse(route)
		if err != nil {
			return
		}
		if err := tab.Insert(u, "fuzz"); err != nil {
			require.ErrorIs(t, err, ErrConflict)
			return
		}
		self := u.Host
		if u.Kind != Exact {
			self = host
		}
		got, _, ok := tab.Match(u.Scheme, self, u.Port, u.Path+path)
		require.True(t, ok, "%s must match its own host and path", u)
		require.LessOrEqual(t, got.Kind, u.Kind, "only a stronger class may take over from %s", u)
		if got.Kind == u.Kind {
			require.GreaterOrEqual(t, len(got.Path), len(u.Path), "only a longer path may take over from %s", u)
		}
		_, ok = tab.Delete(u)
		require.True(t, ok)
		require.Equal(t, len(base), tab.Len())
	})
}
