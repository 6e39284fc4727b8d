package nmf

import (
	"fmt"
	"net/url"
	"strconv"
	"unicode/utf8"
)

// Preamble is the start of a connection as a client writes it
// (AppendPreamble) or as PreambleDecoder read it.
type Preamble struct {
	Major, Minor byte
	Mode         Mode
	Via          string
	// Encoding is the KnownEncoding value; it is ignored when ContentType
	// is set.
	Encoding byte
	// ContentType is the ExtensibleEncoding content type, or "" when the
	// preamble uses a known encoding.
	ContentType string
}

// DecodeError is input a decoder refuses.
type DecodeError struct {
	// Reason is the metric label: "bad_record", "unsupported_version",
	// "unsupported_mode", "via_too_long", "bad_via", "bad_varint",
	// "bad_encoding", and from Reader also "message_too_large".
	Reason string
	// Fault is the short name of the fault WCF sends for this error (see
	// FaultURI), or "" when WCF just aborts the connection. SMSvcHost
	// itself sends none before hand-off; whether to send it is the
	// caller's policy.
	Fault  string
	Detail string
}

func (e *DecodeError) Error() string { return "nmf: " + e.Reason + ": " + e.Detail }

func badRecord(want string, got byte) *DecodeError {
	return &DecodeError{Reason: "bad_record", Detail: fmt.Sprintf("want %s record, got 0x%02x", want, got)}
}

// decoder states, in the order the preamble's bytes arrive.
type preambleState uint8

const (
	stVersionRecord preambleState = iota
	stMajor
	stMinor
	stModeRecord
	stMode
	stViaRecord
	stViaLength
	stVia
	stEncodingRecord
	stKnownEncoding
	stContentTypeLength
	stContentType
	stDone
	stFailed
)

// PreambleDecoder decodes the start of a connection incrementally, as
// SMSvcHost does before it hands the connection to a worker: the Version
// record (major version 1), the Mode record (only SingletonUnsized and
// Duplex), the Via (at most MaxViaLength bytes of UTF-8 forming an absolute
// URI) and, for Duplex only, the encoding record (KnownEncoding 0..8, or
// ExtensibleEncoding with a content type of 1..MaxContentTypeLength bytes
// of UTF-8). It is done right after the Via for SingletonUnsized and after
// the encoding record for Duplex; it never reads the PreambleEnd.
//
// Bytes may arrive in pieces of any size. The decoder keeps at most one
// string of MaxViaLength bytes, whatever the input claims, and refuses a
// too-long Via as soon as its length is read. The zero value is ready to
// use; a decoder serves one connection.
type PreambleDecoder struct {
	st   preambleState
	p    Preamble
	via  *url.URL
	len  varintDecoder // length of the string being read
	need int           // bytes of the string still to come
	buf  []byte        // the string so far
	err  *DecodeError
}

// Feed decodes the next bytes of the connection. It returns done once the
// preamble is complete; consumed is then the number of bytes of p that
// belong to it (the rest belongs to the worker). On an error, which is
// always a *DecodeError, consumed counts up to and including the byte that
// revealed it. Otherwise it consumed all of p and needs more. After done or
// an error Feed consumes nothing and repeats its result. Feed never keeps p.
func (d *PreambleDecoder) Feed(p []byte) (consumed int, done bool, err error) {
	switch d.st {
	case stDone:
		return 0, true, nil
	case stFailed:
		return 0, false, d.err
	}
	for consumed < len(p) {
		n, err := d.step(p[consumed:])
		consumed += n
		if err != nil {
			d.st, d.err, d.buf = stFailed, err, nil
			return consumed, false, err
		}
		if d.st == stDone {
			return consumed, true, nil
		}
	}
	return consumed, false, nil
}

// Preamble returns what has been decoded; it is complete once Feed has
// reported done. PreambleEnd is not read, so only Major, Minor, Mode, Via and
// (for Duplex) Encoding or ContentType are set.
func (d *PreambleDecoder) Preamble() Preamble { return d.p }

// ViaURL returns the parsed Via once it has been decoded, else nil.
func (d *PreambleDecoder) ViaURL() *url.URL { return d.via }

// step consumes at least one byte of non-empty b.
func (d *PreambleDecoder) step(b []byte) (int, *DecodeError) {
	c := b[0]
	switch d.st {
	case stVersionRecord:
		if c != RecVersion {
			return 1, badRecord("Version", c)
		}
		d.st = stMajor
	case stMajor:
		if c != 1 {
			return 1, &DecodeError{Reason: "unsupported_version", Fault: FaultUnsupportedVersion,
				Detail: fmt.Sprintf("major version %d", c)}
		}
		d.p.Major, d.st = c, stMinor
	case stMinor:
		d.p.Minor, d.st = c, stModeRecord
	case stModeRecord:
		if c != RecMode {
			return 1, badRecord("Mode", c)
		}
		d.st = stMode
	case stMode:
		// Simplex and SingletonSized are valid MC-NMF but the port-sharing
		// service does not route them.
		if m := Mode(c); m != ModeSingletonUnsized && m != ModeDuplex {
			return 1, &DecodeError{Reason: "unsupported_mode", Fault: FaultUnsupportedMode,
				Detail: "mode " + m.String()}
		}
		d.p.Mode, d.st = Mode(c), stViaRecord
	case stViaRecord:
		if c != RecVia {
			return 1, badRecord("Via", c)
		}
		d.st = stViaLength
	case stEncodingRecord:
		switch c {
		case RecKnownEncoding:
			d.st = stKnownEncoding
		case RecExtensibleEncoding:
			d.st = stContentTypeLength
		default:
			return 1, badRecord("KnownEncoding or ExtensibleEncoding", c)
		}
	case stKnownEncoding:
		if c > EncodingBinarySession {
			// No encoder matches, which a WCF service answers with
			// ContentTypeInvalid.
			return 1, &DecodeError{Reason: "bad_encoding", Fault: FaultContentTypeInvalid,
				Detail: fmt.Sprintf("unknown encoding %d", c)}
		}
		d.p.Encoding, d.st = c, stDone
	case stViaLength, stContentTypeLength:
		return 1, d.stepLength(c)
	case stVia, stContentType:
		n := min(d.need, len(b))
		d.buf = append(d.buf, b[:n]...)
		d.need -= n
		if d.need > 0 {
			return n, nil
		}
		return n, d.endString()
	}
	return 1, nil
}

// stepLength feeds c to the length of the Via or content type and, once the
// length is known, checks it against its limit before any byte of the
// string is kept.
func (d *PreambleDecoder) stepLength(c byte) *DecodeError {
	complete, err := d.len.feed(c)
	if err != nil {
		return &DecodeError{Reason: "bad_varint", Detail: err.Error()}
	}
	if !complete {
		return nil
	}
	n := d.len.value()
	d.len = varintDecoder{} // ready for the content type after the Via
	if d.st == stViaLength {
		if n > MaxViaLength {
			return &DecodeError{Reason: "via_too_long", Fault: FaultViaTooLong,
				Detail: fmt.Sprintf("Via of %d bytes, limit %d", n, MaxViaLength)}
		}
		d.st = stVia
	} else {
		if n > MaxContentTypeLength {
			return &DecodeError{Reason: "bad_encoding", Fault: FaultContentTypeTooLong,
				Detail: fmt.Sprintf("content type of %d bytes, limit %d", n, MaxContentTypeLength)}
		}
		d.st = stContentType
	}
	d.need, d.buf = n, make([]byte, 0, n)
	if n == 0 {
		return d.endString()
	}
	return nil
}

// endString validates the complete Via or content type and moves on.
func (d *PreambleDecoder) endString() *DecodeError {
	s := string(d.buf)
	d.buf = nil
	if d.st == stVia {
		u, detail := parseVia(s)
		if u == nil {
			return &DecodeError{Reason: "bad_via", Detail: detail}
		}
		d.p.Via, d.via = s, u
		if d.p.Mode == ModeDuplex {
			d.st = stEncodingRecord
		} else {
			d.st = stDone
		}
		return nil
	}
	if s == "" || !utf8.ValidString(s) {
		return &DecodeError{Reason: "bad_encoding", Fault: FaultContentTypeInvalid,
			Detail: "content type is empty or not UTF-8"}
	}
	d.p.ContentType, d.st = s, stDone
	return nil
}

// parseVia parses s as an absolute URI, as WCF's `new Uri(via)` must. It
// returns nil and the reason when s is not UTF-8, not a URI, not absolute or
// names a port above 65535.
func parseVia(s string) (*url.URL, string) {
	if !utf8.ValidString(s) {
		return nil, "Via is not UTF-8"
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err.Error()
	}
	if !u.IsAbs() {
		return nil, fmt.Sprintf("Via %q is not an absolute URI", s)
	}
	// url.Parse checks the port is decimal but not its range.
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return nil, fmt.Sprintf("Via %q has a bad port", s)
		}
	}
	return u, ""
}
