// Package nmf encodes and decodes the .NET Message Framing protocol
// (MC-NMF), the record layer under WCF's net.tcp transport.
//
// A connection starts with a preamble of records (Version, Mode, Via, an
// encoding, optional upgrades, PreambleEnd); the server answers PreambleAck
// and the session then carries envelopes until End. Lengths are varints of
// at most 5 bytes that WCF limits to int32.
//
// PreambleDecoder reads just as much of the preamble as the port-sharing
// service needs to route a connection; Reader reads whole sessions for
// workers and clients; the Append functions write records.
package nmf

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Record types (MC-NMF §2.2).
const (
	RecVersion            byte = 0x00
	RecMode               byte = 0x01
	RecVia                byte = 0x02
	RecKnownEncoding      byte = 0x03
	RecExtensibleEncoding byte = 0x04
	RecUnsizedEnvelope    byte = 0x05
	RecSizedEnvelope      byte = 0x06
	RecEnd                byte = 0x07
	RecFault              byte = 0x08
	RecUpgradeRequest     byte = 0x09
	RecUpgradeResponse    byte = 0x0A
	RecPreambleAck        byte = 0x0B
	RecPreambleEnd        byte = 0x0C
)

// Mode is the communication mode of the Mode record.
type Mode byte

// Modes (MC-NMF §2.2.3.2).
const (
	ModeSingletonUnsized Mode = 1
	ModeDuplex           Mode = 2
	ModeSimplex          Mode = 3
	ModeSingletonSized   Mode = 4
)

// String returns the MC-NMF name of the mode, or "Mode(0xNN)" for a value
// the protocol does not define.
func (m Mode) String() string {
	switch m {
	case ModeSingletonUnsized:
		return "SingletonUnsized"
	case ModeDuplex:
		return "Duplex"
	case ModeSimplex:
		return "Simplex"
	case ModeSingletonSized:
		return "SingletonSized"
	}
	return fmt.Sprintf("Mode(0x%02x)", byte(m))
}

// Known encodings, the value of a KnownEncoding record (MC-NMF §2.2.3.4.1).
const (
	EncodingSOAP11UTF8        byte = 0
	EncodingSOAP11UTF16       byte = 1
	EncodingSOAP11UnicodeFFFE byte = 2
	EncodingSOAP12UTF8        byte = 3
	EncodingSOAP12UTF16       byte = 4
	EncodingSOAP12UnicodeFFFE byte = 5
	EncodingMTOM              byte = 6
	EncodingBinary            byte = 7
	EncodingBinarySession     byte = 8
)

// Limits WCF applies while reading a preamble.
const (
	// MaxViaLength is the longest Via, in bytes, SMSvcHost and WCF accept.
	MaxViaLength = 2048
	// MaxContentTypeLength is the longest ExtensibleEncoding content type
	// (WCF's MaxContentTypeSize); it also bounds UpgradeRequest names.
	MaxContentTypeLength = 256
	// MaxFaultLength is the longest fault URI WCF reads (FaultSizeQuota).
	MaxFaultLength = 256
	// DefaultMaxMessageSize is WCF's default MaxReceivedMessageSize, the
	// envelope limit of a Reader made with maxPayload <= 0.
	DefaultMaxMessageSize = 65536
)

// FaultBase is the URI every framing fault name is appended to.
const FaultBase = "http://schemas.microsoft.com/ws/2006/05/framing/faults/"

// Fault names: a Fault record carries FaultBase followed by one of these.
const (
	FaultContentTypeInvalid       = "ContentTypeInvalid"
	FaultContentTypeTooLong       = "ContentTypeTooLong"
	FaultConnectionDispatchFailed = "ConnectionDispatchFailed"
	FaultEndpointNotFound         = "EndpointNotFound"
	FaultEndpointUnavailable      = "EndpointUnavailable"
	FaultMaxMessageSizeExceeded   = "MaxMessageSizeExceededFault"
	FaultServerTooBusy            = "ServerTooBusy"
	FaultServiceActivationFailed  = "ServiceActivationFailed"
	FaultUnsupportedMode          = "UnsupportedMode"
	FaultUnsupportedVersion       = "UnsupportedVersion"
	FaultUpgradeInvalid           = "UpgradeInvalid"
	FaultViaTooLong               = "ViaTooLong"
)

// FaultURI returns the full fault URI of a fault name.
func FaultURI(name string) string { return FaultBase + name }

// FaultName returns the short name of a fault URI that starts with
// FaultBase, and any other URI unchanged.
func FaultName(uri string) string {
	if name, ok := strings.CutPrefix(uri, FaultBase); ok {
		return name
	}
	return uri
}

// MaxVarintLen is the longest encoding of a record length.
const MaxVarintLen = 5

var (
	// ErrShortVarint means the bytes end inside a varint: more are needed.
	ErrShortVarint = errors.New("nmf: incomplete varint")
	// ErrBadVarint means a varint longer than 5 bytes or above MaxInt32.
	ErrBadVarint = errors.New("nmf: varint over 5 bytes or above MaxInt32")
)

// AppendVarint appends v as a record length: 7 bits per byte, low bits
// first, the high bit set on every byte but the last. It panics if v is
// negative or above math.MaxInt32, which no record may carry: that is a bug
// in the caller, not bad input.
func AppendVarint(b []byte, v int) []byte {
	if v < 0 || v > math.MaxInt32 {
		panic(fmt.Sprintf("nmf: varint %d out of range", v))
	}
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// DecodeVarint decodes the record length at the start of b and returns it
// with the number of bytes it took. It returns ErrShortVarint if b ends
// before the varint does and ErrBadVarint if it runs past 5 bytes or
// exceeds math.MaxInt32.
func DecodeVarint(b []byte) (v int, n int, err error) {
	var d varintDecoder
	for i, c := range b {
		done, err := d.feed(c)
		if err != nil {
			return 0, 0, err
		}
		if done {
			return d.value(), i + 1, nil
		}
	}
	return 0, 0, ErrShortVarint
}

// varintDecoder decodes a varint one byte at a time, so a decoder fed in
// pieces keeps no bytes of it.
type varintDecoder struct {
	v uint32
	n int // bytes seen
}

// feed takes the next byte and reports whether the varint is complete.
func (d *varintDecoder) feed(c byte) (bool, error) {
	// The 5th byte holds bits 28..34: only bits 28..30 fit an int32, and it
	// must be the last. This is WCF's IntDecoder rule.
	if d.n == MaxVarintLen-1 && c&0xF8 != 0 {
		return false, ErrBadVarint
	}
	d.v |= uint32(c&0x7F) << (7 * d.n)
	d.n++
	return c&0x80 == 0, nil
}

func (d *varintDecoder) value() int { return int(d.v) }

// AppendPreamble appends the preamble a client sends: Version, Mode, Via,
// KnownEncoding (or ExtensibleEncoding when p.ContentType is not empty) and
// PreambleEnd. A stock WCF duplex client sends
// {Major: 1, Minor: 0, Mode: ModeDuplex, Via: via, Encoding: EncodingBinarySession}.
func AppendPreamble(b []byte, p Preamble) []byte {
	b = append(b, RecVersion, p.Major, p.Minor, RecMode, byte(p.Mode))
	b = appendString(b, RecVia, p.Via)
	if p.ContentType != "" {
		b = appendString(b, RecExtensibleEncoding, p.ContentType)
	} else {
		b = append(b, RecKnownEncoding, p.Encoding)
	}
	return append(b, RecPreambleEnd)
}

// AppendFault appends a Fault record for the fault name (see FaultURI).
func AppendFault(b []byte, name string) []byte {
	return appendString(b, RecFault, FaultURI(name))
}

// AppendSizedEnvelope appends a SizedEnvelope record carrying payload.
func AppendSizedEnvelope(b, payload []byte) []byte {
	b = AppendVarint(append(b, RecSizedEnvelope), len(payload))
	return append(b, payload...)
}

// AppendEnd appends an End record.
func AppendEnd(b []byte) []byte { return append(b, RecEnd) }

// AppendPreambleAck appends a PreambleAck record.
func AppendPreambleAck(b []byte) []byte { return append(b, RecPreambleAck) }

// appendString appends a record of type t holding a length-prefixed string.
func appendString(b []byte, t byte, s string) []byte {
	b = AppendVarint(append(b, t), len(s))
	return append(b, s...)
}
