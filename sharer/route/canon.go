package route

import "strings"

// CanonicalPath returns p as routes are matched against it, normalised as
// RFC 3986 §6.2.2 and http.sys do before matching, so that
// "/api/../secret" routes as "/secret" and "/%61pi/" as "/api/":
// escapes of unreserved characters (letters, digits, "-", ".", "_", "~")
// are decoded and other escapes kept, runs of "/" become one, and "." and
// ".." segments are resolved ("/.." stays at the root). A trailing slash is
// kept. ok is false for a malformed escape.
//
// Only the routing key is canonical: a worker still receives the bytes the
// client sent.
func CanonicalPath(p string) (string, bool) {
	if !strings.ContainsAny(p, "%.") && !strings.Contains(p, "//") && strings.HasPrefix(p, "/") {
		return p, true // the common case: nothing to do, no allocation
	}
	var segs []string
	for _, seg := range strings.Split(p, "/") {
		seg, ok := decodeUnreserved(seg)
		if !ok {
			return "", false
		}
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "/", true
	}
	last := p[strings.LastIndexByte(p, '/')+1:]
	if last, _ = decodeUnreserved(last); last == "" || last == "." || last == ".." {
		return "/" + strings.Join(segs, "/") + "/", true // "/a/b/.." names "/a/"
	}
	return "/" + strings.Join(segs, "/"), true
}

// decodeUnreserved decodes %XX escapes of unreserved characters.
func decodeUnreserved(s string) (string, bool) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, true
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		if c := unhex(s[i+1])<<4 | unhex(s[i+2]); isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString(s[i : i+3])
		}
		i += 2
	}
	return b.String(), true
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
