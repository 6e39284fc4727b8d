package route

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
)

// ErrConflict is wrapped by the error Insert returns when the route's key is
// already registered.
var ErrConflict = errors.New("route is already registered")

type conflictError struct{ key string }

func (e *conflictError) Error() string { return "route " + e.key + " is already registered" }
func (e *conflictError) Unwrap() error { return ErrConflict }

// Table maps route URIs to values. The zero Table is empty and ready to use.
// It is not safe for concurrent use. Match, Get and PortInUse do not
// allocate.
type Table[V any] struct {
	ports map[uint16]*portRoutes[V] // only ports with at least one route
	n     int
}

// portRoutes holds the routes of one port: for each scheme and host class
// the root of a trie. Strong and weak roots stand for the path "/"; the
// exact root's children are the hosts, each standing for "/" on that host.
// Below, each node is one path segment.
type portRoutes[V any] struct {
	n     int
	roots [len(schemes)][WeakWildcard + 1]*node[V]
}

type node[V any] struct {
	key    string // host or path segment leading here, lower-case
	parent *node[V]
	// kids by foldHash of their key: hashing while folding case lets Match
	// look up a request's segment without making a lower-case copy. A slice
	// holds the (unlikely) keys whose hashes collide.
	kids map[uint64][]*node[V]
	set  bool // a route ends here
	uri  URI
	val  V
}

// Insert adds the route u with value v. u must be as Parse returns it; an
// error says so otherwise. If u's key is already in the table, Insert
// changes nothing and returns an error wrapping ErrConflict.
func (t *Table[V]) Insert(u URI, v V) error {
	if p, err := Parse(u.String()); err != nil {
		return err
	} else if p != u {
		return errors.New("route " + u.String() + " is not in canonical form; make it with Parse")
	}
	p, n := t.at(u, true)
	if n.set {
		return &conflictError{u.Key()}
	}
	n.set, n.uri, n.val = true, u, v
	p.n++
	t.n++
	return nil
}

// Delete removes the route u and returns its value; false if u is not in
// the table.
func (t *Table[V]) Delete(u URI) (V, bool) {
	var zero V
	p, n := t.at(u, false)
	if n == nil || !n.set {
		return zero, false
	}
	v := n.val
	n.set, n.uri, n.val = false, URI{}, zero
	// Prune the branch no route uses any more, so that routes coming and
	// going leave no garbage behind.
	for n.parent != nil && !n.set && len(n.kids) == 0 {
		n.parent.remove(n)
		n = n.parent
	}
	p.n--
	t.n--
	if p.n == 0 {
		delete(t.ports, uint16(u.Port))
	}
	return v, true
}

// Get returns the value of the route with u's key.
func (t *Table[V]) Get(u URI) (V, bool) {
	if _, n := t.at(u, false); n != nil && n.set {
		return n.val, true
	}
	var zero V
	return zero, false
}

// at returns the node of route u and its port's routes, creating what is
// missing if create is set. Without create, n is nil when the node does not
// exist; both are nil when u cannot be a route.
func (t *Table[V]) at(u URI, create bool) (p *portRoutes[V], n *node[V]) {
	sc := schemeIndex(u.Scheme)
	if sc < 0 || u.Kind > WeakWildcard || u.Port < 1 || u.Port > 65535 {
		return nil, nil
	}
	p = t.ports[uint16(u.Port)]
	if p == nil {
		if !create {
			return nil, nil
		}
		if t.ports == nil {
			t.ports = make(map[uint16]*portRoutes[V])
		}
		p = &portRoutes[V]{}
		t.ports[uint16(u.Port)] = p
	}
	root := &p.roots[sc][u.Kind]
	if *root == nil && create {
		*root = &node[V]{}
	}
	step := func(n *node[V], key string) *node[V] {
		if n == nil || !create {
			return kid(n, key)
		}
		return n.add(key)
	}
	n = *root
	if u.Kind == Exact {
		n = step(n, u.Host)
	}
	if segments := strings.Trim(u.Path, "/"); segments != "" {
		for seg := range strings.SplitSeq(segments, "/") {
			n = step(n, seg)
		}
	}
	return p, n
}

// Match returns the route a connection is dispatched to: among the routes
// of scheme (lower-case, as in URI.Scheme) and port, the strong wildcard
// route, else the exact-host route, else the weak wildcard route whose path
// is the longest whole-segment prefix of path. host is the host the client
// named, without port: any case, with or without a trailing dot, an IPv6
// address with or without brackets and in any of its textual forms; empty
// (no SNI, no Host header) matches wildcard routes only. path is split on
// "/" (a leading "/" is optional, "" is "/") and ends at the first "?" or
// "#"; an empty segment ("//") ends the match there. Match does not
// allocate.
func (t *Table[V]) Match(scheme, host string, port int, path string) (URI, V, bool) {
	var zero V
	sc := schemeIndex(scheme)
	if sc < 0 || port < 1 || port > 65535 {
		return URI{}, zero, false
	}
	p := t.ports[uint16(port)]
	if p == nil {
		return URI{}, zero, false
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	roots := &p.roots[sc]
	n := roots[StrongWildcard].longest(path)
	if n == nil && host != "" {
		n = roots[Exact].host(host).longest(path)
	}
	if n == nil {
		n = roots[WeakWildcard].longest(path)
	}
	if n == nil {
		return URI{}, zero, false
	}
	return n.uri, n.val, true
}

// PortInUse reports whether any route, of any scheme, is on port.
func (t *Table[V]) PortInUse(port int) bool {
	if port < 1 || port > 65535 {
		return false
	}
	_, ok := t.ports[uint16(port)]
	return ok
}

// Len returns the number of routes.
func (t *Table[V]) Len() int { return t.n }

// Each calls fn for every route in order of key until fn returns false. It
// works on a snapshot, so fn may change the table.
func (t *Table[V]) Each(fn func(URI, V) bool) {
	type entry struct {
		key string
		uri URI
		val V
	}
	all := make([]entry, 0, t.n)
	var walk func(n *node[V])
	walk = func(n *node[V]) {
		if n == nil {
			return
		}
		if n.set {
			all = append(all, entry{n.uri.Key(), n.uri, n.val})
		}
		for _, kids := range n.kids {
			for _, k := range kids {
				walk(k)
			}
		}
	}
	for _, p := range t.ports {
		for _, roots := range p.roots {
			for _, r := range roots {
				walk(r)
			}
		}
	}
	slices.SortFunc(all, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range all {
		if !fn(e.uri, e.val) {
			return
		}
	}
}

// host returns the child of an exact-class root for a host as a client
// names it (see Match), or nil.
func (n *node[V]) host(h string) *node[V] {
	if n == nil {
		return nil
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(h, ".")
	if !strings.Contains(h, ":") {
		// Host names and IPv4 addresses (net/netip accepts one textual form
		// only) compare as text.
		return kid(n, h)
	}
	ip, ok := parseIPv6(h)
	if !ok {
		return nil
	}
	var buf [64]byte // the longest IPv6 text is 45 bytes
	return kid(n, netip.AddrFrom16(ip).AppendTo(buf[:0]))
}

// longest returns the deepest node on path's leading whole segments where a
// route ends, or nil. n stands for "/".
func (n *node[V]) longest(path string) *node[V] {
	var best *node[V]
	for n != nil {
		if n.set {
			best = n
		}
		path = strings.TrimPrefix(path, "/")
		if path == "" {
			break
		}
		i := strings.IndexByte(path, '/')
		if i < 0 {
			i = len(path)
		}
		n = kid(n, path[:i])
		path = path[i:]
	}
	return best
}

// add returns n's child with the lower-case key, adding it if missing.
func (n *node[V]) add(key string) *node[V] {
	if k := kid(n, key); k != nil {
		return k
	}
	k := &node[V]{key: key, parent: n}
	if n.kids == nil {
		n.kids = make(map[uint64][]*node[V])
	}
	h := foldHash(key)
	n.kids[h] = append(n.kids[h], k)
	return k
}

// remove removes the child k of n.
func (n *node[V]) remove(k *node[V]) {
	h := foldHash(k.key)
	if kids := slices.DeleteFunc(n.kids[h], func(x *node[V]) bool { return x == k }); len(kids) > 0 {
		n.kids[h] = kids
	} else {
		delete(n.kids, h)
	}
}

type text interface{ string | []byte }

// kid returns n's child whose key equals key with ASCII case folded, or nil
// (also when n is nil).
func kid[V any, S text](n *node[V], key S) *node[V] {
	if n == nil {
		return nil
	}
	for _, k := range n.kids[foldHash(key)] {
		if equalFold(k.key, key) {
			return k
		}
	}
	return nil
}

// foldHash is 64-bit FNV-1a of s with ASCII letters lower-cased. It need not
// resist chosen collisions: only registered routes are hashed into the
// table, and a request's key costs one hash and one comparison per
// candidate whatever it is.
func foldHash[S text](s S) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(lower(s[i]))
		h *= 1099511628211
	}
	return h
}

// equalFold reports whether s equals the lower-case key with ASCII case
// folded.
func equalFold[S text](key string, s S) bool {
	if len(key) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if key[i] != lower(s[i]) {
			return false
		}
	}
	return true
}

// parseIPv6 parses an IPv6 address without zone as net/netip.ParseAddr
// does, but without allocating: netip's errors are allocated, and a client
// chooses the host Match is given.
func parseIPv6(s string) (ip [16]byte, ok bool) {
	ellipsis := -1 // index in ip where "::" stands
	if strings.HasPrefix(s, "::") {
		ellipsis = 0
		s = s[2:]
		if s == "" {
			return ip, true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, 0
		for ; off < len(s) && off < 5; off++ {
			d := hexDigit(s[off])
			if d < 0 {
				break
			}
			acc = acc<<4 | d
		}
		if off == 0 || off == 5 {
			return ip, false
		}
		if off < len(s) && s[off] == '.' {
			// Embedded IPv4 address: the last four bytes.
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return ip, false
			}
			ip4, valid := parseIPv4(s)
			if !valid {
				return ip, false
			}
			copy(ip[i:], ip4[:])
			s = ""
			i += 4
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if s == "" {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return ip, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return ip, false
			}
			ellipsis = i
			s = s[1:]
			if s == "" {
				break
			}
		}
	}
	if s != "" {
		return ip, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return ip, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return ip, false // "::" must stand for at least one zero field
	}
	return ip, true
}

// parseIPv4 parses a dotted-decimal IPv4 address as net/netip does: four
// fields 0..255 without leading zeros.
func parseIPv4(s string) (ip [4]byte, ok bool) {
	for f := range 4 {
		if f > 0 {
			if s == "" || s[0] != '.' {
				return ip, false
			}
			s = s[1:]
		}
		n, digits := 0, 0
		for ; digits < len(s) && digits < 4 && '0' <= s[digits] && s[digits] <= '9'; digits++ {
			n = n*10 + int(s[digits]-'0')
		}
		if digits == 0 || digits > 3 || n > 255 || digits > 1 && s[0] == '0' {
			return ip, false
		}
		ip[f] = byte(n)
		s = s[digits:]
	}
	return ip, s == ""
}

func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
