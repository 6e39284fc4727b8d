package route

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want URI
		text string // String(); "" means the same as in
	}{
		{"net.tcp://+:8808/orders/", URI{"net.tcp", "+", StrongWildcard, 8808, "/orders/"}, ""},
		{"http://localhost:8808/api/", URI{"http", "localhost", Exact, 8808, "/api/"}, ""},
		{"tls://a.example:8443/", URI{"tls", "a.example", Exact, 8443, "/"}, ""},
		{"net.tcp://*:1/", URI{"net.tcp", "*", WeakWildcard, 1, "/"}, ""},
		// default ports and missing path
		{"net.tcp://+/x/", URI{"net.tcp", "+", StrongWildcard, 808, "/x/"}, "net.tcp://+:808/x/"},
		{"http://h", URI{"http", "h", Exact, 80, "/"}, "http://h:80/"},
		{"tls://a.example", URI{"tls", "a.example", Exact, 443, "/"}, "tls://a.example:443/"},
		{"http://h:65535", URI{"http", "h", Exact, 65535, "/"}, "http://h:65535/"},
		{"http://h:0080/", URI{"http", "h", Exact, 80, "/"}, "http://h:80/"},
		// trailing "/" added to the path
		{"http://h:81/a/b", URI{"http", "h", Exact, 81, "/a/b/"}, "http://h:81/a/b/"},
		// upper case folded, trailing dot of a host name dropped
		{"NET.TCP://A.Example.:8808/Orders/New/", URI{"net.tcp", "a.example", Exact, 8808, "/orders/new/"}, "net.tcp://a.example:8808/orders/new/"},
		{"HTTP://[::1]/API", URI{"http", "::1", Exact, 80, "/api/"}, "http://[::1]:80/api/"},
		// IP addresses in canonical form
		{"net.tcp://[::1]:9000/x/", URI{"net.tcp", "::1", Exact, 9000, "/x/"}, ""},
		{"net.tcp://[0:0:0:0:0:0:0:1]:9000/x/", URI{"net.tcp", "::1", Exact, 9000, "/x/"}, "net.tcp://[::1]:9000/x/"},
		{"net.tcp://[FE80::0001]/", URI{"net.tcp", "fe80::1", Exact, 808, "/"}, "net.tcp://[fe80::1]:808/"},
		{"net.tcp://[::FFFF:10.0.0.1]:1/", URI{"net.tcp", "::ffff:10.0.0.1", Exact, 1, "/"}, "net.tcp://[::ffff:10.0.0.1]:1/"},
		{"http://10.0.0.1:8080/", URI{"http", "10.0.0.1", Exact, 8080, "/"}, ""},
		{"http://under_score-x.y1:8080/", URI{"http", "under_score-x.y1", Exact, 8080, "/"}, ""},
		// not an IP address (leading zero), so a host name
		{"http://010.0.0.1/", URI{"http", "010.0.0.1", Exact, 80, "/"}, "http://010.0.0.1:80/"},
		// path bytes other than ASCII letters are kept
		{"http://+/%7Euser/caf\u00c9/%20x/", URI{"http", "+", StrongWildcard, 80, "/~user/caf\u00c9/%20x/"}, "http://+:80/~user/caf\u00c9/%20x/"}, // unreserved escapes decoded, others kept
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := Parse(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, u)
			text := tt.text
			if text == "" {
				text = tt.in
			}
			assert.Equal(t, text, u.String())
			assert.Equal(t, u.String(), u.Key())
			again, err := Parse(u.String())
			require.NoError(t, err)
			assert.Equal(t, u, again)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"ftp://x/", `route "ftp://x/": scheme "ftp" is not one of net.tcp, http, tls`},
		{"https://x/", `scheme "https" is not one of net.tcp, http, tls`},
		{"://x/", `scheme "" is not one of`},
		{"", "want scheme://host:port/path/"},
		{"localhost:8808/orders/", "want scheme://host:port/path/"},
		{"http:/x/", "want scheme://host:port/path/"},
		{"http:///", "missing host"},
		{"http://:80/", "missing host"},
		{"http://x:0/", `port "0" is not a number from 1 to 65535`},
		{"http://x:65536/", `port "65536"`},
		{"http://x:/", `port ""`},
		{"http://x:+80/", `port "+80"`},
		{"http://x:-1/", `port "-1"`},
		{"http://x:http/", `port "http"`},
		{"http://x:99999999999999999999/", `port "99999999999999999999"`},
		{"http://[::1]x/", `unexpected "x" after the IPv6 address`},
		{"http://[::1/", `missing "]"`},
		{"http://[1.2.3.4]/", `"1.2.3.4" is not an IPv6 address`},
		{"http://[::g]/", `"::g" is not an IPv6 address`},
		{"http://[+]/", `"+" is not an IPv6 address`},
		{"http://[fe80::1%25eth0]/", "IPv6 zones are not supported"},
		{"http://::1/", "must be in brackets"},
		{"http://a..b/", `host "a..b" is not`},
		{"http://a.b../", `host "a.b.." is not`},
		{"http://./", `host "." is not`},
		{"http://a+b/", `host "a+b" is not`},
		{"http://caf\u00e9.example/", `is not +, *, an IP address or a host name`},
		{"http://" + strings.Repeat("a", 254) + "/", "at most 253 bytes"},
		{"http://user@x/", "user info is not allowed"},
		{"http://x/a?b=1", `no query or fragment (found '?')`},
		{"http://x/a/#top", `no query or fragment (found '#')`},
		{"http://x?/", "no query or fragment"},
		{"tls://a.example:8443/x/", `a tls route has no path (got "/x/")`},
		{"tls://a.example//", "a tls route has no path"},
		{"http://x/a//b/", `path "/a//b/" has an empty segment`},
		{"http://x//", "has an empty segment"},
		{"http://x/a/../b/", `has a ".." segment`},
		{"http://x/./", `has a "." segment`},
		{"http://x/a b/", "spaces and control characters are not allowed"},
		{"http://x/a\tb/", "spaces and control characters are not allowed"},
		{"http://x/a\x7f/", "spaces and control characters are not allowed"},
		{"http://x/\xff/", "not valid UTF-8"},
		{"http://x/" + strings.Repeat("a", MaxLen), "longer than 2048 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := Parse(tt.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "route ")
			assert.Equal(t, URI{}, u)
		})
	}
}

func TestHostKindString(t *testing.T) {
	assert.Equal(t, "strong-wildcard", StrongWildcard.String())
	assert.Equal(t, "exact", Exact.String())
	assert.Equal(t, "weak-wildcard", WeakWildcard.String())
	assert.Equal(t, "HostKind(7)", HostKind(7).String())
}

func TestParseRefusesWhatWouldBeTooLongInFull(t *testing.T) {
	long := "http://+/" + strings.Repeat("a", MaxLen-len("http://+/"))
	_, err := Parse(long)
	require.Error(t, err, "the canonical form adds :80 and a trailing slash")
	u, err := Parse("http://+/" + strings.Repeat("a", MaxLen-len("http://+:80//")))
	require.NoError(t, err)
	var tb Table[int]
	require.NoError(t, tb.Insert(u, 1))
}
