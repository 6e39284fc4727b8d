package sniff

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/portshare/portshare/sharer/route"
)

// httpParser reads an HTTP/1.x request head: the request line and the
// header fields up to and including the blank line. It buffers at most
// Limits.MaxHTTPHead bytes and scans each byte for the end of the head only
// once, so feeding one byte at a time costs linear time.
//
// Lines end in LF with an optional CR before it, as RFC 9112 §2.2 lets a
// recipient accept; a CR anywhere else is refused.
type httpParser struct {
	max       int
	head      []byte
	lineStart int // offset in head of the line being scanned
	skipped   int // empty lines before the request line (RFC 9112 §2.2)
}

func newHTTP(l Limits) parser {
	return &httpParser{max: l.MaxHTTPHead}
}

// feed buffers bytes until the blank line that ends the head, then parses
// the head. Bytes after the head (a body, a pipelined request) are ignored.
// A head longer than max is refused with 431 as soon as max bytes have
// arrived without its end.
func (h *httpParser) feed(p []byte) (Key, bool, error) {
	if len(h.head) == 0 {
		// A server SHOULD ignore empty lines before the request line; they
		// count against the head limit all the same.
		n := len(p) - len(bytes.TrimLeft(p, "\r\n"))
		h.skipped += n
		p = p[n:]
		if h.skipped >= h.max {
			return Key{}, false, badRequest("no request line")
		}
	}
	scanFrom := len(h.head)
	h.head = append(h.head, p[:min(len(p), h.max-h.skipped-len(h.head))]...)
	for i := scanFrom; i < len(h.head); {
		n := bytes.IndexByte(h.head[i:], '\n')
		if n < 0 {
			break
		}
		end := i + n
		if line := h.head[h.lineStart:end]; len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return parseHTTPHead(h.head[:end+1])
		}
		h.lineStart = end + 1
		i = end + 1
	}
	if h.skipped+len(h.head) >= h.max {
		return Key{}, false, &Error{Protocol: HTTP, Reason: "header_too_large", Status: 431,
			Detail: "request head over " + strconv.Itoa(h.max) + " bytes"}
	}
	return Key{}, false, nil
}

func badRequest(detail string) error {
	return &Error{Protocol: HTTP, Reason: "bad_request", Status: 400, Detail: detail}
}

// parseHTTPHead parses a complete head (ending in its blank line) into the
// routing key. It refuses with 505 ("unsupported_version") the HTTP/2
// preface, and with 400 ("bad_request") a malformed request line, a version
// other than HTTP/1.0 and HTTP/1.1, a malformed or folded header line, more
// than one Host, no Host in HTTP/1.1, an invalid Host, and a target that is
// neither origin-form, absolute-form http(s) nor "*" with OPTIONS.
func parseHTTPHead(head []byte) (Key, bool, error) {
	lines := strings.Split(string(head), "\n")
	lines = lines[:len(lines)-2] // the blank line and the empty rest after it
	if len(lines) == 0 {
		return Key{}, false, badRequest("empty request line")
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}

	reqLine := lines[0]
	if reqLine == "PRI * HTTP/2.0" {
		return Key{}, false, &Error{Protocol: HTTP, Reason: "unsupported_version", Status: 505,
			Detail: "HTTP/2 connection preface"}
	}
	parts := strings.Split(reqLine, " ")
	if len(parts) != 3 {
		return Key{}, false, badRequest("request line is not METHOD SP target SP version")
	}
	method, target, version := parts[0], parts[1], parts[2]
	if !isToken(method) {
		return Key{}, false, badRequest("bad method")
	}
	if version != "HTTP/1.1" && version != "HTTP/1.0" {
		return Key{}, false, badRequest("bad version")
	}
	if target == "" || strings.ContainsFunc(target, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return Key{}, false, badRequest("bad request target")
	}

	hostValue, hostCount := "", 0
	for _, l := range lines[1:] {
		if l[0] == ' ' || l[0] == '\t' {
			return Key{}, false, badRequest("obsolete line folding")
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !isToken(name) {
			return Key{}, false, badRequest("bad header line")
		}
		value = strings.Trim(value, " \t")
		if strings.ContainsFunc(value, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
			return Key{}, false, badRequest("control character in header " + name)
		}
		if strings.EqualFold(name, "Host") {
			hostValue, hostCount = value, hostCount+1
		}
	}
	if hostCount > 1 {
		return Key{}, false, badRequest("more than one Host header")
	}
	if hostCount == 0 && version == "HTTP/1.1" {
		return Key{}, false, badRequest("HTTP/1.1 request without Host")
	}
	// RFC 9112 §3.2: a Host header is checked even when the target carries
	// the authority; an empty value is what a client sends for no host.
	key := Key{Protocol: HTTP, Via: target}
	if hostValue != "" {
		host, port, ok := splitHostPort(hostValue)
		if !ok {
			return Key{}, false, badRequest("bad Host header")
		}
		key.Host, key.Port = host, port
	}

	switch {
	case target[0] == '/':
		key.Path = cutQuery(target)
	case target == "*":
		if method != "OPTIONS" {
			return Key{}, false, badRequest("asterisk target without OPTIONS")
		}
		key.Path = "/"
	default:
		// RFC 9112 §3.2.2: the authority of an absolute-form target
		// replaces the Host header.
		host, port, path, ok := parseAbsolute(target)
		if !ok {
			// Authority-form (CONNECT) and anything else: nothing to route.
			return Key{}, false, badRequest("request target is neither origin- nor absolute-form")
		}
		key.Host, key.Port, key.Path = host, port, path
	}
	path, ok := route.CanonicalPath(key.Path)
	if !ok {
		return Key{}, false, badRequest("bad percent-escape in the path")
	}
	key.Path = path
	return key, true, nil
}

// parseAbsolute splits an absolute-form target with scheme http or https
// into host, port and path (query and fragment dropped, "/" if empty). A
// target with userinfo or an empty host is refused (RFC 9110 §4.2.1, §4.2.4).
func parseAbsolute(target string) (host string, port int, path string, ok bool) {
	scheme, rest, found := strings.Cut(target, "://")
	if !found || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		return "", 0, "", false
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, rest = rest[:i], rest[i:]
	} else {
		rest = ""
	}
	host, port, ok = splitHostPort(authority)
	if !ok || strings.Contains(authority, "@") {
		return "", 0, "", false
	}
	path = cutQuery(rest)
	if path == "" {
		path = "/"
	}
	return host, port, path, true
}

// cutQuery returns target without its query and fragment.
func cutQuery(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port" into a
// non-empty host without brackets and the port (0 if absent or empty). It
// fails on an empty host, a character a URI host may not hold, or a port
// that is not a decimal number up to 65535.
func splitHostPort(s string) (host string, port int, ok bool) {
	var portStr string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, false
		}
		host, portStr = s[1:end], s[end+1:]
		// IPv6address, IPvFuture and a zone ID (RFC 6874) use no more
		// than these.
		if !allIn(host, &v6Chars) {
			return "", 0, false
		}
	} else {
		host, portStr = s, ""
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, portStr = s[:i], s[i:]
		}
		if !allIn(host, &regNameChars) {
			return "", 0, false
		}
	}
	if host == "" {
		return "", 0, false
	}
	if portStr == "" {
		return host, 0, true
	}
	if portStr[0] != ':' {
		return "", 0, false
	}
	for _, c := range portStr[1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		if port = port*10 + int(c-'0'); port > 65535 {
			return "", 0, false
		}
	}
	return host, port, true
}

const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

var (
	tokenChars = charSet(alnum + "!#$%&'*+-.^_`|~") // RFC 9110 tchar
	// reg-name and IPv4address of RFC 3986: unreserved, pct-encoded and
	// sub-delims.
	regNameChars = charSet(alnum + "-._~%!$&'()*+,;=")
	v6Chars      = charSet(alnum + "-._~%!$&'()*+,;=:")
)

func charSet(chars string) (set [256]bool) {
	for i := range len(chars) {
		set[chars[i]] = true
	}
	return set
}

// allIn reports whether every byte of s is in set.
func allIn(s string, set *[256]bool) bool {
	for i := range len(s) {
		if !set[s[i]] {
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	return s != "" && allIn(s, &tokenChars)
}
