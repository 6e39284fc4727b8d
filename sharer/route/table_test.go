package route

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustParse(t testing.TB, s string) URI {
	t.Helper()
	u, err := Parse(s)
	require.NoError(t, err)
	return u
}

// newTable returns a table holding routes, each with its own text as value.
func newTable(t testing.TB, routes ...string) *Table[string] {
	t.Helper()
	var tab Table[string]
	for _, r := range routes {
		u := mustParse(t, r)
		require.NoError(t, tab.Insert(u, u.String()))
	}
	return &tab
}

func TestMatchPrecedence(t *testing.T) {
	tab := newTable(t,
		"net.tcp://+:8808/orders/",
		"net.tcp://a.example:8808/orders/new/", // longer, but strong wins
		"net.tcp://a.example:8808/",
		"net.tcp://a.example:8808/billing/",
		"net.tcp://*:8808/billing/invoices/", // longer, but exact wins
		"net.tcp://*:8808/",
		"net.tcp://[::1]:8808/ipv6/",
		"net.tcp://10.0.0.1:8808/ipv4/",
		"net.tcp://+:9000/a/",
		"net.tcp://+:9000/a/b/c/",
		"http://+:8808/api/",
		"http://localhost:8808/",
		"tls://a.example:8443/",
		"tls://*:8443/",
	)
	tests := []struct {
		name         string
		scheme, host string
		port         int
		path         string
		want         string // "" for no match
	}{
		// class precedence
		{"strong beats longer exact", "net.tcp", "a.example", 8808, "/orders/new/x", "net.tcp://+:8808/orders/"},
		{"strong without host", "net.tcp", "", 8808, "/orders", "net.tcp://+:8808/orders/"},
		{"strong for any host", "net.tcp", "z.example", 8808, "/orders/1", "net.tcp://+:8808/orders/"},
		{"exact beats longer weak", "net.tcp", "a.example", 8808, "/billing/invoices/1", "net.tcp://a.example:8808/billing/"},
		{"exact root beats weak", "net.tcp", "a.example", 8808, "/other/", "net.tcp://a.example:8808/"},
		{"weak for other host", "net.tcp", "b.example", 8808, "/billing/invoices/1", "net.tcp://*:8808/billing/invoices/"},
		{"weak root for other host", "net.tcp", "b.example", 8808, "/x", "net.tcp://*:8808/"},
		{"no host skips exact", "net.tcp", "", 8808, "/billing/", "net.tcp://*:8808/"},
		{"no host, tls", "tls", "", 8443, "/", "tls://*:8443/"},
		{"sni host, tls", "tls", "a.example", 8443, "/", "tls://a.example:8443/"},
		{"sni other host, tls", "tls", "b.example", 8443, "", "tls://*:8443/"},
		// longest whole-segment prefix within a class
		{"deepest route", "net.tcp", "h", 9000, "/a/b/c/d", "net.tcp://+:9000/a/b/c/"},
		{"deepest route exactly", "net.tcp", "h", 9000, "/a/b/c", "net.tcp://+:9000/a/b/c/"},
		{"shallower route", "net.tcp", "h", 9000, "/a/b/x", "net.tcp://+:9000/a/"},
		{"partial path walks back", "net.tcp", "h", 9000, "/a/b", "net.tcp://+:9000/a/"},
		{"route without slash", "net.tcp", "h", 9000, "/a", "net.tcp://+:9000/a/"},
		{"no route for the path", "net.tcp", "h", 9000, "/b/", ""},
		{"no root route", "net.tcp", "h", 9000, "", ""},
		{"no leading slash", "net.tcp", "h", 9000, "a/b/c/", "net.tcp://+:9000/a/b/c/"},
		// segment boundaries
		{"longer segment", "net.tcp", "z", 8808, "/ordersx", "net.tcp://*:8808/"},
		{"shorter segment", "net.tcp", "z", 8808, "/order", "net.tcp://*:8808/"},
		{"longer segment exact", "net.tcp", "a.example", 8808, "/ordersx/new/", "net.tcp://a.example:8808/"},
		{"deeper segment prefix", "net.tcp", "h", 9000, "/a/b/cd", "net.tcp://+:9000/a/"},
		{"empty segment stops", "net.tcp", "h", 9000, "/a//b/c/", "net.tcp://+:9000/a/"},
		{"empty first segment", "net.tcp", "z", 8808, "//orders/", "net.tcp://*:8808/"},
		// case and host forms
		{"path case", "net.tcp", "z", 8808, "/Orders/New", "net.tcp://+:8808/orders/"},
		{"path upper case", "net.tcp", "h", 9000, "/A/B/C/", "net.tcp://+:9000/a/b/c/"},
		{"host case", "net.tcp", "A.EXAMPLE", 8808, "/Billing", "net.tcp://a.example:8808/billing/"},
		{"host trailing dot", "net.tcp", "a.example.", 8808, "/billing/", "net.tcp://a.example:8808/billing/"},
		{"tls host case and dot", "tls", "A.Example.", 8443, "/", "tls://a.example:8443/"},
		{"other host name", "net.tcp", "a.example.org", 8808, "/billing/", "net.tcp://*:8808/"},
		{"ipv6 bare", "net.tcp", "::1", 8808, "/ipv6/x", "net.tcp://[::1]:8808/ipv6/"},
		{"ipv6 brackets", "net.tcp", "[::1]", 8808, "/ipv6/", "net.tcp://[::1]:8808/ipv6/"},
		{"ipv6 long form", "net.tcp", "0:0:0:0:0:0:0:1", 8808, "/IPv6", "net.tcp://[::1]:8808/ipv6/"},
		{"ipv6 other form in brackets", "net.tcp", "[0000::0001]", 8808, "/ipv6", "net.tcp://[::1]:8808/ipv6/"},
		{"ipv6 other address", "net.tcp", "::2", 8808, "/ipv6/", "net.tcp://*:8808/"},
		{"ipv6 malformed", "net.tcp", "[::g]", 8808, "/ipv6/", "net.tcp://*:8808/"},
		{"ipv6 with zone", "net.tcp", "::1%eth0", 8808, "/ipv6/", "net.tcp://*:8808/"},
		{"ipv4", "net.tcp", "10.0.0.1", 8808, "/ipv4/", "net.tcp://10.0.0.1:8808/ipv4/"},
		{"ipv4 other text", "net.tcp", "010.0.0.1", 8808, "/ipv4/", "net.tcp://*:8808/"},
		{"ipv4 mapped is another address", "net.tcp", "::ffff:10.0.0.1", 8808, "/ipv4/", "net.tcp://*:8808/"},
		// query and fragment
		{"query ignored", "net.tcp", "h", 9000, "/a/b/c?x=1", "net.tcp://+:9000/a/b/c/"},
		{"query inside a segment", "net.tcp", "h", 9000, "/a/b?/c/", "net.tcp://+:9000/a/"},
		{"fragment ignored", "net.tcp", "h", 9000, "/a/b/c/#x", "net.tcp://+:9000/a/b/c/"},
		{"query after route", "net.tcp", "z", 8808, "/orders/new/x?ignored", "net.tcp://+:8808/orders/"},
		{"query only", "net.tcp", "h", 9000, "?a/", ""},
		// scheme and port
		{"other scheme on the port", "http", "x", 8808, "/api/v1", "http://+:8808/api/"},
		{"http exact", "http", "LocalHost", 8808, "/orders/", "http://localhost:8808/"},
		{"http no route", "http", "a.example", 8808, "/orders/", ""},
		{"scheme must match", "tls", "a.example", 8808, "/", ""},
		{"unknown scheme", "ftp", "a.example", 8808, "/", ""},
		{"scheme is lower-case", "NET.TCP", "a.example", 8808, "/", ""},
		{"port must match", "net.tcp", "a.example", 8443, "/", ""},
		{"port without routes", "net.tcp", "a.example", 9001, "/", ""},
		{"port zero", "net.tcp", "a.example", 0, "/", ""},
		{"port too large", "net.tcp", "a.example", 8808 + 65536, "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, v, ok := tab.Match(tt.scheme, tt.host, tt.port, tt.path)
			if tt.want == "" {
				assert.False(t, ok, "matched %s", u)
				assert.Equal(t, URI{}, u)
				assert.Empty(t, v)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tt.want, u.String())
			assert.Equal(t, tt.want, v)
		})
	}
}

func TestInsertConflict(t *testing.T) {
	tests := []struct{ first, second string }{
		{"net.tcp://+:8808/orders/", "net.tcp://+:8808/orders/"},
		{"net.tcp://+:8808/orders/", "NET.TCP://+:8808/Orders"},
		{"http://localhost/api/", "http://LOCALHOST:80/API/"},
		{"net.tcp://*/", "net.tcp://*:808"},
		{"tls://a.example/", "tls://A.Example.:443"},
		{"net.tcp://[::1]:9000/x/", "net.tcp://[0:0::1]:9000/X/"},
	}
	for _, tt := range tests {
		t.Run(tt.second, func(t *testing.T) {
			tab := newTable(t, tt.first)
			u := mustParse(t, tt.second)
			err := tab.Insert(u, "second")
			require.ErrorIs(t, err, ErrConflict)
			assert.Equal(t, "route "+u.String()+" is already registered", err.Error())
			v, ok := tab.Get(u)
			require.True(t, ok)
			assert.Equal(t, mustParse(t, tt.first).String(), v, "the first registration stays")
			assert.Equal(t, 1, tab.Len())
		})
	}
}

func TestNoConflict(t *testing.T) {
	// Keys differ in exactly one part: all coexist.
	tab := newTable(t,
		"net.tcp://+:8808/orders/",
		"net.tcp://*:8808/orders/",
		"net.tcp://orders:8808/orders/",
		"http://+:8808/orders/",
		"net.tcp://+:8809/orders/",
		"net.tcp://+:8808/orders/new/",
		"net.tcp://+:8808/",
	)
	assert.Equal(t, 7, tab.Len())
}

func TestInsertRejectsHandMadeURI(t *testing.T) {
	var tab Table[int]
	for _, u := range []URI{
		{},
		{Scheme: "http", Host: "A", Kind: Exact, Port: 80, Path: "/"},
		{Scheme: "http", Host: "+", Kind: Exact, Port: 80, Path: "/"},
		{Scheme: "http", Host: "a", Kind: Exact, Port: 80, Path: "/x"},
		{Scheme: "http", Host: "a", Kind: Exact, Port: 0, Path: "/"},
		{Scheme: "ftp", Host: "a", Kind: Exact, Port: 21, Path: "/"},
	} {
		assert.Error(t, tab.Insert(u, 1), "%#v", u)
	}
	assert.Equal(t, 0, tab.Len())
	assert.False(t, tab.PortInUse(80))
}

func TestDeleteAndReinsert(t *testing.T) {
	tab := newTable(t, "net.tcp://+:8808/orders/", "net.tcp://+:8808/orders/new/", "http://a.example:8808/x/")
	orders, ordersNew := mustParse(t, "net.tcp://+:8808/orders/"), mustParse(t, "NET.TCP://+:8808/Orders/New")

	v, ok := tab.Delete(ordersNew)
	require.True(t, ok)
	assert.Equal(t, "net.tcp://+:8808/orders/new/", v)
	_, ok = tab.Delete(ordersNew)
	assert.False(t, ok, "second delete")
	_, ok = tab.Get(ordersNew)
	assert.False(t, ok)
	u, _, ok := tab.Match("net.tcp", "h", 8808, "/orders/new/1")
	require.True(t, ok)
	assert.Equal(t, orders, u, "the parent route takes over")

	require.NoError(t, tab.Insert(ordersNew, "again"))
	_, v, ok = tab.Match("net.tcp", "h", 8808, "/orders/new/1")
	require.True(t, ok)
	assert.Equal(t, "again", v)

	// Deleting a parent keeps its child.
	_, ok = tab.Delete(orders)
	require.True(t, ok)
	_, _, ok = tab.Match("net.tcp", "h", 8808, "/orders/1")
	assert.False(t, ok)
	_, v, ok = tab.Match("net.tcp", "h", 8808, "/orders/new/")
	require.True(t, ok)
	assert.Equal(t, "again", v)
	assert.Equal(t, 2, tab.Len())

	// Routes that were never there.
	for _, s := range []string{"net.tcp://+:8808/", "net.tcp://+:8808/orders/new/x/", "net.tcp://*:8808/orders/new/", "net.tcp://+:1/", "tls://+:8808/"} {
		_, ok = tab.Delete(mustParse(t, s))
		assert.False(t, ok, s)
	}
	assert.Equal(t, 2, tab.Len())
}

func TestDeletePrunes(t *testing.T) {
	routes := []string{"net.tcp://+:8808/a/b/c/", "net.tcp://+:8808/a/", "net.tcp://h:8808/a/b/", "http://[::1]:8808/", "tls://*:8443/"}
	tab := newTable(t, routes...)
	for _, r := range routes {
		_, ok := tab.Delete(mustParse(t, r))
		require.True(t, ok, r)
	}
	assert.Empty(t, tab.ports, "no port entry left")
	assert.Equal(t, 0, tab.Len())

	// One port entry stays while another scheme still uses the port, and
	// the emptied tries keep no nodes.
	tab = newTable(t, "net.tcp://h:8808/a/b/", "http://+:8808/")
	_, ok := tab.Delete(mustParse(t, "net.tcp://h:8808/a/b/"))
	require.True(t, ok)
	require.Len(t, tab.ports, 1)
	assert.Empty(t, tab.ports[8808].roots[0][Exact].kids)
}

func TestPortInUse(t *testing.T) {
	tab := newTable(t, "net.tcp://+:8808/a/", "http://h:8808/", "tls://*:8443/")
	assert.True(t, tab.PortInUse(8808))
	assert.True(t, tab.PortInUse(8443))
	assert.False(t, tab.PortInUse(808))
	assert.False(t, tab.PortInUse(0))
	assert.False(t, tab.PortInUse(8808+65536))

	tab.Delete(mustParse(t, "net.tcp://+:8808/a/"))
	assert.True(t, tab.PortInUse(8808), "the http route is still on the port")
	tab.Delete(mustParse(t, "http://h:8808/"))
	assert.False(t, tab.PortInUse(8808))
	assert.True(t, tab.PortInUse(8443))

	var empty Table[int]
	assert.False(t, empty.PortInUse(80))
	_, _, ok := empty.Match("http", "h", 80, "/")
	assert.False(t, ok)
	_, ok = empty.Get(mustParse(t, "http://h/"))
	assert.False(t, ok)
}

func TestEach(t *testing.T) {
	routes := []string{
		"tls://*:8443/",
		"net.tcp://+:8808/orders/",
		"http://[::1]:80/",
		"net.tcp://a.example:8808/orders/new/",
		"net.tcp://+:8808/",
		"http://+:8080/api/",
	}
	tab := newTable(t, routes...)
	var got []string
	tab.Each(func(u URI, v string) bool {
		assert.Equal(t, u.String(), v)
		got = append(got, u.Key())
		return true
	})
	assert.Equal(t, []string{
		"http://+:8080/api/",
		"http://[::1]:80/",
		"net.tcp://+:8808/",
		"net.tcp://+:8808/orders/",
		"net.tcp://a.example:8808/orders/new/",
		"tls://*:8443/",
	}, got)

	// Stop early, and change the table from fn.
	n := 0
	tab.Each(func(u URI, _ string) bool {
		_, ok := tab.Delete(u)
		assert.True(t, ok)
		n++
		return n < 2
	})
	assert.Equal(t, 2, n)
	assert.Equal(t, len(routes)-2, tab.Len())
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tab := newTable(t, "net.tcp://+:8808/orders/", "net.tcp://[::1]:8808/x/", "net.tcp://a.example:8808/x/y/", "net.tcp://*:8808/")
	queries := []struct{ host, path string }{
		{"a.example", "/X/Y/z?q"},
		{"A.EXAMPLE.", "/" + strings.Repeat("Long", 100) + "/"},
		{"1111:2222:3333:4444:5555:6666:7777:8888", "/x/"},
		{"[0:0:0:0:0:0:0:1]", "/x/"},
		{"0000:0000:0000:0000:0000:ffff:255.255.255.255", "/x/"},
		{"::g", "/x/"},
		{"1.2.3", "/x/"},
		{"", "/orders/new"},
	}
	get := mustParse(t, "net.tcp://a.example:8808/x/y/")
	allocs := testing.AllocsPerRun(100, func() {
		for _, q := range queries {
			tab.Match("net.tcp", q.host, 8808, q.path)
		}
		tab.Get(get)
		tab.PortInUse(8808)
	})
	assert.Zero(t, allocs)
}

func TestParseIPv6AgreesWithNetip(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1::2", "0:0:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "FFFF::ffff",
		"::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1::1.2.3.4",
		// invalid
		"", ":", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", "12345::", "::g",
		"1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:", ":1", "1.2.3.4", "::1.2.3", "::01.2.3.4",
		"::256.1.1.1", "::1.2.3.4.5", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4:1", "::1%eth0", "::1234.1.1.1",
		"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
	} {
		checkParseIPv6(t, s)
	}
}

// checkParseIPv6 asserts that parseIPv6 accepts s exactly when net/netip
// parses it as an IPv6 address without zone, and to the same address.
func checkParseIPv6(t *testing.T, s string) {
	t.Helper()
	got, ok := parseIPv6(s)
	a, err := netip.ParseAddr(s)
	want := err == nil && a.Is6() && a.Zone() == ""
	require.Equal(t, want, ok, "%q: netip says %v", s, err)
	if ok {
		require.Equal(t, a.As16(), got, "%q", s)
	}
}

// benchTable returns a table of 1,000 routes on four ports, three schemes,
// 25 exact hosts and the two wildcards, with paths of one to three segments,
// and a mix of lookups against it: hits in every class, upper case, queries,
// no host, IPv6, misses.
func benchTable(tb testing.TB) (*Table[int], []matchQuery) {
	var tab Table[int]
	ports := []int{8808, 8809, 80}
	for i := 0; tab.Len() < 1000; i++ {
		require.Less(tb, i, 10000)
		port := ports[i%len(ports)]
		scheme := "net.tcp"
		if port == 80 {
			scheme = "http"
		}
		host := fmt.Sprintf("host%d.example", i%25)
		switch i % 10 {
		case 5:
			host = "[::1]"
		case 0:
			host = "+"
		case 9:
			host = "*"
		}
		path := fmt.Sprintf("/svc%d/", i%40)
		if i%3 > 0 {
			path += fmt.Sprintf("v%d/", i%7)
		}
		if i%3 > 1 {
			path += fmt.Sprintf("op%d/", i)
		}
		if i%20 == 1 {
			scheme, port, path = "tls", 8443, "/"
		}
		u := mustParse(tb, scheme+"://"+host+":"+fmt.Sprint(port)+path)
		if err := tab.Insert(u, i); err != nil {
			require.ErrorIs(tb, err, ErrConflict)
		}
	}
	// Look up variations of every 15th route, and some misses.
	var routes []URI
	tab.Each(func(u URI, _ int) bool { routes = append(routes, u); return true })
	var queries []matchQuery
	for i := range 64 {
		r := routes[i*15%len(routes)]
		q := matchQuery{r.Scheme, r.Host, r.Port, r.Path + "item/7"}
		switch {
		case r.Kind != Exact:
			q.host = "other.example"
		case r.Host == "::1":
			q.host = "[0:0::1]"
		}
		switch i % 8 {
		case 1:
			q.host = strings.ToUpper(q.host) + "."
			q.path = strings.ToUpper(q.path)
		case 2:
			q.path += "?q=1"
		case 3:
			q.host = ""
		case 4:
			q.path = "/nothing/here/"
		case 5:
			q.port = 9999
		}
		queries = append(queries, q)
	}
	return &tab, queries
}

type matchQuery struct {
	scheme, host string
	port         int
	path         string
}

func TestBenchTableMatches(t *testing.T) {
	tab, queries := benchTable(t)
	hits := 0
	for _, q := range queries {
		if _, _, ok := tab.Match(q.scheme, q.host, q.port, q.path); ok {
			hits++
		}
	}
	assert.Greater(t, hits, len(queries)/2, "the benchmark looks up mostly hits")
	assert.Less(t, hits, len(queries), "and some misses")
	assert.Zero(t, testing.AllocsPerRun(10, func() {
		for _, q := range queries {
			tab.Match(q.scheme, q.host, q.port, q.path)
		}
	}))
}

func BenchmarkMatch1000(b *testing.B) {
	tab, queries := benchTable(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := &queries[i%len(queries)]
		tab.Match(q.scheme, q.host, q.port, q.path)
		i++
	}
}
