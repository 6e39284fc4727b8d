package sniff

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		head string
		want Key
	}{
		{"origin-form", "GET /api/orders HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/api/orders", Via: "/api/orders"}},
		{"query and fragment stripped", "GET /api/x?y=1&z=/w#frag HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/api/x", Via: "/api/x?y=1&z=/w#frag"}},
		{"percent-encoding kept", "GET /a%20b/%2F HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/a%20b/%2F", Via: "/a%20b/%2F"}},
		{"host case kept", "GET / HTTP/1.1\r\nHost: A.Example\r\n\r\n",
			Key{Host: "A.Example", Path: "/", Via: "/"}},
		{"host with port", "POST /p HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
			Key{Host: "a.example", Port: 8080, Path: "/p", Via: "/p"}},
		{"host with empty port", "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n",
			Key{Host: "a.example", Path: "/", Via: "/"}},
		{"IPv4 host", "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
			Key{Host: "127.0.0.1", Port: 80, Path: "/", Via: "/"}},
		{"IPv6 host with port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			Key{Host: "::1", Port: 8080, Path: "/", Via: "/"}},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n",
			Key{Host: "fe80::1%25eth0", Path: "/", Via: "/"}},
		{"header name case and OWS", "GET / HTTP/1.1\r\nUser-Agent: t\r\nhOsT: \t a.example \t\r\nAccept: */*\r\n\r\n",
			Key{Host: "a.example", Path: "/", Via: "/"}},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			Key{Path: "/", Via: "/"}},
		{"HTTP/1.0 without Host", "GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n",
			Key{Path: "/old", Via: "/old"}},
		{"HTTP/1.0 with Host", "GET /old HTTP/1.0\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/old", Via: "/old"}},
		{"bare LF line ends", "GET /lf HTTP/1.1\nHost: a.example\n\n",
			Key{Host: "a.example", Path: "/lf", Via: "/lf"}},
		{"absolute-form beats Host", "GET http://b.example:8081/p/q?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "b.example", Port: 8081, Path: "/p/q", Via: "http://b.example:8081/p/q?x=1"}},
		{"absolute-form without path", "GET HTTP://b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
			Key{Host: "b.example", Path: "/", Via: "HTTP://b.example"}},
		{"absolute-form query without path", "GET http://b.example?q HTTP/1.1\r\nHost: b.example\r\n\r\n",
			Key{Host: "b.example", Path: "/", Via: "http://b.example?q"}},
		{"absolute-form https IPv6", "GET https://[::1]:9/x HTTP/1.0\r\n\r\n",
			Key{Host: "::1", Port: 9, Path: "/x", Via: "https://[::1]:9/x"}},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/", Via: "*"}},
		{"extension method", "PROPFIND /dav/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
			Key{Host: "a.example", Path: "/dav/", Via: "/dav/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Protocol = HTTP
			data := []byte(tc.head)
			got := sniffWhole(Limits{}, data)
			require.NoError(t, got.Err)
			require.True(t, got.Done)
			assert.Equal(t, tc.want, got.Key)
			for _, n := range []int{1, 2, 3, 7} {
				assert.Equal(t, got, sniffChunks(Limits{}, data, n), "pieces of %d", n)
			}
		})
	}
}

func TestHTTPRefused(t *testing.T) {
	const host = "\r\nHost: a.example\r\n\r\n"
	for _, tc := range []struct {
		name   string
		head   string
		reason string
		status int
	}{
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "bad_request", 400},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", "bad_request", 400},
		{"duplicate Host HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", "bad_request", 400},
		{"no version", "GET /\r\nHost: a.example\r\n\r\n", "bad_request", 400},
		{"two spaces", "GET  / HTTP/1.1" + host, "bad_request", 400},
		{"trailing space", "GET / HTTP/1.1 " + host, "bad_request", 400},
		{"lower-case version", "GET / http/1.1" + host, "bad_request", 400},
		{"HTTP/1.2", "GET / HTTP/1.2" + host, "bad_request", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0" + host, "bad_request", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "unsupported_version", 505},
		{"method not a token", "G(T / HTTP/1.1" + host, "bad_request", 400},
		{"bare CR in request line", "GET /a\rb HTTP/1.1" + host, "bad_request", 400},
		{"control char in target", "GET /a\x01 HTTP/1.1" + host, "bad_request", 400},
		{"relative target", "GET a/b HTTP/1.1" + host, "bad_request", 400},
		{"asterisk without OPTIONS", "GET * HTTP/1.1" + host, "bad_request", 400},
		{"authority-form CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "bad_request", 400},
		{"absolute-form other scheme", "GET ftp://a.example/ HTTP/1.1" + host, "bad_request", 400},
		{"absolute-form userinfo", "GET http://u@a.example/ HTTP/1.1" + host, "bad_request", 400},
		{"absolute-form empty host", "GET http:///x HTTP/1.1" + host, "bad_request", 400},
		{"absolute-form bad port", "GET http://a.example:x/ HTTP/1.1" + host, "bad_request", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\n  2\r\n\r\n", "bad_request", 400},
		{"header without colon", "GET / HTTP/1.1\r\nHost: a.example\r\nNoColon\r\n\r\n", "bad_request", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", "bad_request", 400},
		{"empty header name", "GET / HTTP/1.1\r\nHost: a.example\r\n: x\r\n\r\n", "bad_request", 400},
		{"control char in value", "GET / HTTP/1.1\r\nHost: a.example\r\nX: a\x00b\r\n\r\n", "bad_request", 400},
		{"bare CR in header", "GET / HTTP/1.1\r\nHost: a.example\rX: y\r\n\r\n", "bad_request", 400},
		{"port too large", "GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", "bad_request", 400},
		{"port not a number", "GET / HTTP/1.1\r\nHost: a.example:80a\r\n\r\n", "bad_request", 400},
		{"negative port", "GET / HTTP/1.1\r\nHost: a.example:-1\r\n\r\n", "bad_request", 400},
		{"two colons", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", "bad_request", 400},
		{"port without host", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "bad_request", 400},
		{"unclosed bracket", "GET / HTTP/1.1\r\nHost: [::1:80\r\n\r\n", "bad_request", 400},
		{"junk after bracket", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", "bad_request", 400},
		{"empty brackets", "GET / HTTP/1.1\r\nHost: []:80\r\n\r\n", "bad_request", 400},
		{"slash in IPv6 host", "GET / HTTP/1.1\r\nHost: [::1/8]\r\n\r\n", "bad_request", 400},
		{"slash in host", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", "bad_request", 400},
		{"space in host", "GET / HTTP/1.1\r\nHost: a example\r\n\r\n", "bad_request", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.head)
			got := sniffWhole(Limits{}, data)
			requireError(t, got, HTTP, tc.reason, tc.status)
			assert.Equal(t, got, sniffBytewise(Limits{}, data))
		})
	}
}

// headOfSize returns a complete request head of exactly n bytes (n >= 64).
func headOfSize(n int) string {
	const start, end = "GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: ", "\r\n\r\n"
	return start + strings.Repeat("p", n-len(start)-len(end)) + end
}

func TestHTTPHeadLimit(t *testing.T) {
	for _, limit := range []int{64, 100, DefaultLimits.MaxHTTPHead} {
		l := Limits{MaxHTTPHead: limit}
		atLimit := []byte(headOfSize(limit))
		require.Len(t, atLimit, limit)
		for _, r := range []result{sniffWhole(l, atLimit), sniffBytewise(l, atLimit)} {
			require.NoError(t, r.Err)
			assert.True(t, r.Done)
			assert.Equal(t, "a.example", r.Key.Host)
		}

		over := []byte(headOfSize(limit + 1))
		requireError(t, sniffWhole(l, over), HTTP, "header_too_large", 431)
		requireError(t, sniffBytewise(l, over), HTTP, "header_too_large", 431)
	}
}

func TestHTTPHeadLimitRefusedEarly(t *testing.T) {
	// The 431 comes once the limit is reached, without waiting for the
	// client to end its (endless) head.
	s := New(Limits{MaxHTTPHead: 64})
	_, done, err := s.Feed([]byte(strings.Repeat("G", 63)))
	require.NoError(t, err)
	require.False(t, done)
	_, _, err = s.Feed([]byte("G"))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 431, e.Status)
}

func TestHTTPDefaultLimit(t *testing.T) {
	over := []byte(headOfSize(DefaultLimits.MaxHTTPHead + 1))
	requireError(t, sniffWhole(Limits{}, over), HTTP, "header_too_large", 431)
}

func TestHTTPBodyIgnored(t *testing.T) {
	// Body and a pipelined request in the same read, longer than the head
	// limit: the head alone counts.
	head := headOfSize(64)
	data := []byte(head + strings.Repeat("\x00body\r\n\r\n", 50) + "GET /next HTTP/1.1\r\nHost: b\r\n\r\n")
	l := Limits{MaxHTTPHead: 64}
	got := sniffWhole(l, data)
	require.NoError(t, got.Err)
	require.True(t, got.Done)
	assert.Equal(t, Key{Protocol: HTTP, Host: "a.example", Path: "/", Via: "/"}, got.Key)

	// The end of the head arrives with the body.
	s := New(l)
	_, done, err := s.Feed([]byte(head[:len(head)-3]))
	require.NoError(t, err)
	require.False(t, done)
	key, done, err := s.Feed([]byte(head[len(head)-3:] + "BODY\n\n"))
	require.NoError(t, err)
	require.True(t, done)
	assert.Equal(t, got.Key, key)
}

func TestHTTPIgnoresEmptyLinesBeforeTheRequestLine(t *testing.T) {
	// RFC 9112 §2.2: a server SHOULD ignore empty lines received first.
	r := sniffWhole(Limits{}, []byte("\r\n\r\nget /a HTTP/1.1\r\nHost: h\r\n\r\n"))
	require.NoError(t, r.Err)
	assert.True(t, r.Done)
	assert.Equal(t, "/a", r.Key.Path)
	assert.Equal(t, r, sniffBytewise(Limits{}, []byte("\r\n\r\nget /a HTTP/1.1\r\nHost: h\r\n\r\n")))

	// Only empty lines, up to the head limit, is a bad request.
	_, _, err := New(Limits{MaxHTTPHead: 512}).Feed([]byte(strings.Repeat("\r\n", 256)))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.Status)
}

func TestHTTPIncomplete(t *testing.T) {
	for _, head := range []string{"G", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r"} {
		assert.Equal(t, result{}, sniffWhole(Limits{}, []byte(head)), "%q", head)
	}
}

// FuzzSniffHTTP checks that no input panics, that whole and byte-at-a-time
// feeding agree, and that results keep the package's contract.
func FuzzSniffHTTP(f *testing.F) {
	for _, s := range []string{
		"GET /api/x?y HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
		"GET http://[::1]:9/p HTTP/1.1\r\nHost: x\r\n\r\nbody",
		"OPTIONS * HTTP/1.0\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n fold\r\n\r\n",
		headOfSize(300),
	} {
		f.Add([]byte(s))
	}
	l := Limits{MaxHTTPHead: 256}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && (data[0] < 'A' || data[0] > 'Z') {
			return // not HTTP: another parser's business
		}
		whole := sniffWhole(l, data)
		require.Equal(t, whole, sniffBytewise(l, data))
		switch {
		case whole.Done:
			assert.Equal(t, HTTP, whole.Key.Protocol)
			assert.True(t, strings.HasPrefix(whole.Key.Path, "/"), "path %q", whole.Key.Path)
			assert.NotContains(t, whole.Key.Path, "?")
			assert.True(t, whole.Key.Port >= 0 && whole.Key.Port <= 65535)
		case whole.Err != nil:
			var e *Error
			require.ErrorAs(t, whole.Err, &e)
			assert.Equal(t, HTTP, e.Protocol)
			assert.Contains(t, []int{400, 431, 505}, e.Status)
		default:
			assert.Less(t, len(data), l.MaxHTTPHead, "undecided after the limit")
		}
	})
}

const benchHead = "GET /api/orders/12345?expand=lines HTTP/1.1\r\n" +
	"Host: orders.example:8808\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n\r\n"

func BenchmarkSniffHTTP(b *testing.B) {
	data := []byte(benchHead)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if r := sniffWhole(Limits{}, data); !r.Done {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkSniffHTTPBytewise feeds a head of the default limit one byte at a
// time: its cost per byte must stay that of the whole feed (no rescans).
func BenchmarkSniffHTTPBytewise(b *testing.B) {
	data := []byte(headOfSize(DefaultLimits.MaxHTTPHead))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if r := sniffBytewise(Limits{}, data); !r.Done {
			b.Fatal(r.Err)
		}
	}
}
