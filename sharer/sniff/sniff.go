// Package sniff reads the first bytes of an accepted connection and finds
// its routing key: the Via of a .NET Message Framing preamble (net.tcp), the
// Host header and path of an HTTP/1.x request, or the server_name of a TLS
// ClientHello.
//
// A Sniffer is fed the connection's bytes in order, in pieces of any size
// (one byte at a time is fine), and keeps only bounded state, so one slow
// client costs little and never blocks another: the caller owns the
// goroutine and the deadline.
package sniff

import "fmt"

// Protocol is what the first bytes of a connection say it speaks.
type Protocol uint8

const (
	Unknown Protocol = iota
	NetTCP           // .NET Message Framing: starts 00 01 00
	HTTP             // HTTP/1.x: starts with a method token (or CRLF)
	TLS              // TLS handshake record: starts 16 03
)

// String returns the route scheme of the protocol ("net.tcp", "http", "tls").
func (p Protocol) String() string {
	switch p {
	case NetTCP:
		return "net.tcp"
	case HTTP:
		return "http"
	case TLS:
		return "tls"
	}
	return "unknown"
}

// Key is the routing key read from a connection.
type Key struct {
	Protocol Protocol
	// Host as the client named it (Via host, Host header without port, or
	// SNI), not lower-cased; empty when the client sent none (TLS without
	// SNI, HTTP/1.0 without Host).
	Host string
	// Port from the Via or the Host header; 0 when absent. Routing uses the
	// port the connection arrived on, not this one.
	Port int
	// Path without query or fragment, starting with "/"; "/" for TLS.
	Path string
	// Via is the raw Via URI of a net.tcp preamble, or for HTTP the
	// request target; empty for TLS.
	Via string
}

// Error is a connection the sniffer refuses. The daemon counts it under
// Reason and, where the protocol has one, tells the client: Fault is the
// MC-NMF fault name to send (empty for none), Status the HTTP status to
// answer (0 for none).
type Error struct {
	Protocol Protocol
	Reason   string // metric label: "bad_record", "via_too_long", "header_too_large", ...
	Fault    string
	Status   int
	Detail   string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: %s: %s", e.Protocol, e.Reason, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Protocol, e.Reason)
}

// Limits bound what a sniffer reads before it gives up.
type Limits struct {
	// MaxHTTPHead is the largest HTTP request head (request line and
	// headers); larger gets status 431. Default 8 KiB.
	MaxHTTPHead int
	// MaxTLSHello is the largest ClientHello handshake message. Default 16 KiB.
	MaxTLSHello int
}

// DefaultLimits are the limits used when a field of Limits is zero.
var DefaultLimits = Limits{MaxHTTPHead: 8 << 10, MaxTLSHello: 16 << 10}

// parser is one protocol's incremental decoder.
type parser interface {
	// feed consumes the next bytes and reports the key once complete.
	feed(p []byte) (Key, bool, error)
}

// Sniffer finds the routing key of one connection. The zero value is not
// usable: call New.
type Sniffer struct {
	limits Limits
	p      parser
	done   bool
	err    error
}

// New returns a Sniffer with the given limits (zero fields take defaults).
func New(l Limits) *Sniffer {
	if l.MaxHTTPHead <= 0 {
		l.MaxHTTPHead = DefaultLimits.MaxHTTPHead
	}
	if l.MaxTLSHello <= 0 {
		l.MaxTLSHello = DefaultLimits.MaxTLSHello
	}
	return &Sniffer{limits: l}
}

// Protocol reports the protocol once the first byte has been seen.
func (s *Sniffer) Protocol() Protocol {
	switch s.p.(type) {
	case *netTCPParser:
		return NetTCP
	case *httpParser:
		return HTTP
	case *tlsParser:
		return TLS
	}
	return Unknown
}

// Feed consumes the next bytes of the connection. It returns done once the
// key is complete (later bytes are not needed and Feed must not be called
// again), or an *Error when the connection must be refused. With neither,
// more bytes are needed. Feed never keeps p.
func (s *Sniffer) Feed(p []byte) (key Key, done bool, err error) {
	if s.done || s.err != nil {
		return Key{}, false, &Error{Reason: "internal", Detail: "Feed after the result"}
	}
	if len(p) == 0 {
		return Key{}, false, nil
	}
	if s.p == nil {
		switch b := p[0]; {
		case b == 0x00:
			s.p = newNetTCP(s.limits)
		case b == 0x16:
			s.p = newTLS(s.limits)
		case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b == '\r', b == '\n':
			// A method token, or the empty lines a client may send first.
			s.p = newHTTP(s.limits)
		default:
			s.err = &Error{Reason: "unknown_protocol", Detail: fmt.Sprintf("first byte 0x%02x", b)}
			return Key{}, false, s.err
		}
	}
	key, done, err = s.p.feed(p)
	s.done, s.err = done, err
	return key, done, err
}
