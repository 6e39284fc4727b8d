// Package route parses route URIs and keeps the route table that maps a
// connection's routing key to what registered for it.
//
// Matching follows SMSvcHost and http.sys: only routes of the connection's
// scheme and port are candidates; the strong wildcard host "+" is tried
// first, then the exact host, then the weak wildcard "*"; within a class the
// route with the longest path that is a prefix of the request path on whole
// segments wins. Hosts and paths compare case-insensitively, folding ASCII
// letters only: other bytes must be equal. Paths are compared in canonical
// form (CanonicalPath): a route's path is stored that way, and callers
// canonicalise request paths before Match.
package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest route URI Parse accepts, in bytes: the longest Via
// SMSvcHost accepts, so any Via a client can send fits a route.
const MaxLen = 2048

// HostKind is the class of a route's host. The values are in matching order.
type HostKind uint8

const (
	StrongWildcard HostKind = iota // "+": any host, before exact hosts
	Exact                          // a literal host name or IP address
	WeakWildcard                   // "*": any host, after exact hosts
)

func (k HostKind) String() string {
	switch k {
	case StrongWildcard:
		return "strong-wildcard"
	case Exact:
		return "exact"
	case WeakWildcard:
		return "weak-wildcard"
	}
	return "HostKind(" + strconv.Itoa(int(k)) + ")"
}

// schemes are the route schemes with their default ports; a scheme's index
// here is its index in the table.
var schemes = [...]struct {
	name string
	port int
}{{"net.tcp", 808}, {"http", 80}, {"tls", 443}}

// schemeIndex returns the index of the lower-case scheme s in schemes, or -1.
func schemeIndex(s string) int {
	for i, sc := range schemes {
		if sc.name == s {
			return i
		}
	}
	return -1
}

// URI is a parsed route URI such as net.tcp://+:8808/orders/. The zero URI
// is not a route; make URIs with Parse, which keeps every field canonical so
// that equal routes are equal URIs.
type URI struct {
	Scheme string   // "net.tcp", "http" or "tls"
	Host   string   // "+", "*", a lower-case host name without a trailing dot, or an IP address in net/netip form (IPv6 without brackets)
	Kind   HostKind // follows from Host
	Port   int      // 1..65535
	Path   string   // lower-case, starts and ends with "/"; "/" for tls
}

// Parse parses a route URI: scheme://host[:port][/path]. The scheme
// (net.tcp, http or tls) and host are case-insensitive; the host is "+",
// "*", a host name, an IPv4 address or an IPv6 address in brackets. The
// port defaults to 808 for net.tcp, 80 for http and 443 for tls. A missing
// path is "/", and a path gets a trailing "/" (a route names a subtree);
// path segments may not be empty, "." or ".."; a tls route has no path
// beyond "/" since SNI carries only a host name. User info, query and
// fragment are errors, as are control characters, spaces and invalid UTF-8,
// and URIs longer than MaxLen. Errors quote s and name the problem.
func Parse(s string) (URI, error) {
	u, err := parse(s)
	if err == nil && len(u.String()) > MaxLen {
		// The canonical form adds the port and a trailing "/".
		return URI{}, fmt.Errorf("route %q: longer than %d bytes once written in full (%s)", s, MaxLen, "scheme://host:port/path/")
	}
	return u, err
}

func parse(s string) (URI, error) {
	fail := func(format string, args ...any) (URI, error) {
		return URI{}, fmt.Errorf("route %q: %s", s, fmt.Sprintf(format, args...))
	}
	if len(s) > MaxLen {
		return fail("longer than %d bytes", MaxLen)
	}
	if !utf8.ValidString(s) {
		return fail("not valid UTF-8")
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == 0x7f {
			return fail("contains %q; spaces and control characters are not allowed", c)
		}
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return fail("a route has no query or fragment (found %q)", s[i])
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fail("want scheme://host:port/path/")
	}
	var u URI
	u.Scheme = asciiLower(scheme)
	sc := schemeIndex(u.Scheme)
	if sc < 0 {
		return fail("scheme %q is not one of net.tcp, http, tls", scheme)
	}

	authority, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if strings.Contains(authority, "@") {
		return fail("user info is not allowed")
	}
	host, portText, hasPort, bracketed := authority, "", false, false
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return fail(`missing "]" after the IPv6 address`)
		}
		host, bracketed = authority[1:end], true
		if after := authority[end+1:]; after != "" {
			if after[0] != ':' {
				return fail("unexpected %q after the IPv6 address", after)
			}
			portText, hasPort = after[1:], true
		}
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, portText, hasPort = authority[:i], authority[i+1:], true
	}

	u.Port = schemes[sc].port
	if hasPort {
		n, err := strconv.Atoi(portText)
		if err != nil || portText[0] < '0' || portText[0] > '9' || n < 1 || n > 65535 {
			return fail("port %q is not a number from 1 to 65535", portText)
		}
		u.Port = n
	}

	switch {
	case bracketed:
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return fail("%q is not an IPv6 address", host)
		}
		if a.Zone() != "" {
			return fail("IPv6 zones are not supported (%q)", host)
		}
		u.Host, u.Kind = a.String(), Exact
	case host == "":
		return fail("missing host (use +, * or a host name)")
	case host == "+":
		u.Host, u.Kind = host, StrongWildcard
	case host == "*":
		u.Host, u.Kind = host, WeakWildcard
	case strings.Contains(host, ":"):
		return fail("an IPv6 address must be in brackets, as in [::1]")
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			u.Host = a.String()
		} else if u.Host = asciiLower(strings.TrimSuffix(host, ".")); !validHostName(u.Host) {
			return fail("host %q is not +, *, an IP address or a host name (letters, digits, '-', '_', dot-separated; at most 253 bytes)", host)
		}
		u.Kind = Exact
	}

	if u.Scheme == "tls" && path != "/" {
		return fail("a tls route has no path (got %q): SNI carries only a host name", path)
	}
	if path == "/" {
		u.Path = path
		return u, nil
	}
	segments := strings.TrimSuffix(path[1:], "/")
	for seg := range strings.SplitSeq(segments, "/") {
		dec, ok := decodeUnreserved(seg)
		switch {
		case !ok:
			return fail("path %q has a malformed %%-escape", path)
		case dec == "":
			return fail(`path %q has an empty segment`, path)
		case dec == "." || dec == "..":
			return fail("path %q has a %q segment", path, seg)
		}
	}
	canon, _ := CanonicalPath("/" + segments + "/")
	u.Path = asciiLower(canon)
	return u, nil
}

// validHostName reports whether h is a lower-case DNS-style name: non-empty
// dot-separated labels of letters, digits, '-' and '_', at most 253 bytes.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String returns the canonical text of u, with the port always written, as
// in net.tcp://+:8808/orders/. For a URI made by Parse,
// Parse(u.String()) returns u.
func (u URI) String() string {
	host := u.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return u.Scheme + "://" + host + ":" + strconv.Itoa(u.Port) + u.Path
}

// Key returns the identity of the route: two routes conflict when their
// keys are equal. It is the canonical text, as String.
func (u URI) Key() string { return u.String() }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiLower lower-cases the ASCII letters of s and leaves every other byte
// alone, so that it agrees with the folding Match does; strings.ToLower
// would also fold non-ASCII letters, which Match does not.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}
