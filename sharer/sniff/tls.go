package sniff

import (
	"encoding/binary"
	"strconv"
)

const (
	tlsRecordHandshake    = 22
	tlsHandshakeHello     = 1 // client_hello
	tlsExtServerName      = 0
	tlsServerNameHostName = 0
	// maxTLSRecord is the largest record length accepted: 2^14 plus the
	// 2048 bytes of expansion RFC 5246 §6.2.3 allows a ciphertext record.
	maxTLSRecord = 1<<14 + 2048
)

// tlsParser reads TLS handshake records until the first handshake message,
// which must be a ClientHello, is complete. The message may be split over
// several records and the records over any number of reads. It keeps the
// record header being read and the message received so far, at most
// Limits.MaxTLSHello bytes.
type tlsParser struct {
	max     int
	hdr     [5]byte // record header being read
	hdrN    int     // bytes of hdr read
	recLeft int     // fragment bytes of the current record not yet read
	msg     []byte  // handshake message so far, its 4-byte header included
}

func newTLS(l Limits) parser {
	return &tlsParser{max: l.MaxTLSHello}
}

func tlsError(reason, detail string) error {
	return &Error{Protocol: TLS, Reason: reason, Detail: detail}
}

// feed consumes record headers and handshake fragments. It refuses a record
// that is not a handshake record of version 3.x, an empty record or one
// longer than maxTLSRecord ("bad_tls"), a first handshake message other than
// ClientHello ("not_client_hello") or longer than max ("hello_too_large"),
// and a ClientHello that does not parse ("bad_tls"). Bytes after the
// ClientHello are ignored.
func (t *tlsParser) feed(p []byte) (Key, bool, error) {
	for len(p) > 0 {
		if t.recLeft == 0 {
			n := copy(t.hdr[t.hdrN:], p)
			t.hdrN += n
			p = p[n:]
			if t.hdrN < len(t.hdr) {
				break
			}
			t.hdrN = 0
			if err := t.startRecord(); err != nil {
				return Key{}, false, err
			}
			continue
		}
		n := min(t.recLeft, len(p))
		t.recLeft -= n
		key, done, err := t.addFragment(p[:n])
		if done || err != nil {
			return key, done, err
		}
		p = p[n:]
	}
	return Key{}, false, nil
}

// startRecord checks the record header in t.hdr.
func (t *tlsParser) startRecord() error {
	if t.hdr[0] != tlsRecordHandshake {
		return tlsError("bad_tls", "record type "+strconv.Itoa(int(t.hdr[0]))+", want handshake")
	}
	if t.hdr[1] != 3 {
		return tlsError("bad_tls", "record version not 3.x")
	}
	length := int(binary.BigEndian.Uint16(t.hdr[3:]))
	if length == 0 || length > maxTLSRecord {
		return tlsError("bad_tls", "record length "+strconv.Itoa(length))
	}
	t.recLeft = length
	return nil
}

// addFragment appends handshake bytes to the message, checks its header as
// soon as it is complete, and parses the message once all of it is there.
func (t *tlsParser) addFragment(f []byte) (Key, bool, error) {
	if len(t.msg) < 4 {
		n := min(4-len(t.msg), len(f))
		t.msg = append(t.msg, f[:n]...)
		f = f[n:]
		if len(t.msg) < 4 {
			return Key{}, false, nil
		}
		if t.msg[0] != tlsHandshakeHello {
			return Key{}, false, tlsError("not_client_hello", "handshake type "+strconv.Itoa(int(t.msg[0])))
		}
		if l := t.msgLen(); l > t.max {
			return Key{}, false, tlsError("hello_too_large", "ClientHello of "+strconv.Itoa(l)+" bytes")
		}
	}
	// Grown by append, not allocated at the announced length, so memory
	// follows what the client actually sent.
	t.msg = append(t.msg, f[:min(len(f), 4+t.msgLen()-len(t.msg))]...)
	if len(t.msg) < 4+t.msgLen() {
		return Key{}, false, nil
	}
	sni, err := parseClientHello(t.msg[4:])
	if err != nil {
		return Key{}, false, err
	}
	return Key{Protocol: TLS, Host: sni, Path: "/"}, true, nil
}

func (t *tlsParser) msgLen() int {
	return int(t.msg[1])<<16 | int(t.msg[2])<<8 | int(t.msg[3])
}

// bytesReader reads big-endian integers and length-prefixed vectors,
// failing (ok false) instead of reading past the end.
type bytesReader struct {
	b  []byte
	ok bool
}

func (r *bytesReader) next(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *bytesReader) u8() int {
	if v := r.next(1); v != nil {
		return int(v[0])
	}
	return 0
}

func (r *bytesReader) u16() int {
	if v := r.next(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

// vec8 and vec16 read a vector with a 1- or 2-byte length.
func (r *bytesReader) vec8() []byte  { return r.next(r.u8()) }
func (r *bytesReader) vec16() []byte { return r.next(r.u16()) }

// parseClientHello parses a ClientHello body (RFC 8446 §4.1.2, RFC 5246
// §7.4.1.2) and returns its SNI host_name, "" without a server_name
// extension.
func parseClientHello(body []byte) (string, error) {
	r := bytesReader{b: body, ok: true}
	version := r.u16()
	r.next(32) // random
	sessionID := r.vec8()
	suites := r.vec16()
	compression := r.vec8()
	if !r.ok || version>>8 != 3 || len(sessionID) > 32 ||
		len(suites) < 2 || len(suites)%2 != 0 || len(compression) < 1 {
		return "", tlsError("bad_tls", "malformed ClientHello")
	}
	if len(r.b) == 0 {
		return "", nil // no extensions: allowed before TLS 1.3
	}
	exts := bytesReader{b: r.vec16(), ok: r.ok}
	if !r.ok || len(r.b) != 0 {
		return "", tlsError("bad_tls", "malformed ClientHello extensions")
	}
	sni, seen := "", false
	for exts.ok && len(exts.b) > 0 {
		typ, data := exts.u16(), exts.vec16()
		if !exts.ok || typ != tlsExtServerName {
			continue
		}
		if seen {
			return "", tlsError("bad_tls", "duplicate server_name extension")
		}
		seen = true
		var err error
		if sni, err = parseServerName(data); err != nil {
			return "", err
		}
	}
	if !exts.ok {
		return "", tlsError("bad_tls", "malformed ClientHello extensions")
	}
	return sni, nil
}

// parseServerName parses the server_name extension (RFC 6066 §3) and
// returns its host_name. It fails on a malformed list, more than one
// host_name, or a host_name that is not a DNS name of letters, digits, '-',
// '_' and '.' without a trailing dot.
func parseServerName(data []byte) (string, error) {
	r := bytesReader{b: data, ok: true}
	list := bytesReader{b: r.vec16(), ok: r.ok}
	if !r.ok || len(r.b) != 0 || len(list.b) == 0 {
		return "", tlsError("bad_tls", "malformed server_name extension")
	}
	host := ""
	for list.ok && len(list.b) > 0 {
		typ, name := list.u8(), list.vec16()
		if !list.ok || typ != tlsServerNameHostName {
			continue
		}
		if host != "" {
			return "", tlsError("bad_tls", "more than one host_name")
		}
		host = string(name)
		if host == "" || host[len(host)-1] == '.' || !allIn(host, &sniChars) {
			return "", tlsError("bad_tls", "bad host_name")
		}
	}
	if !list.ok {
		return "", tlsError("bad_tls", "malformed server_name extension")
	}
	return host, nil
}

var sniChars = charSet(alnum + "-_.")
