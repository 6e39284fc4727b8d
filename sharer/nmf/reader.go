package nmf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Record is one decoded record.
type Record struct {
	Type byte
	// Value is the major version (Version), the mode (Mode) or the
	// encoding (KnownEncoding); Value2 is the minor version (Version).
	Value, Value2 byte
	// Payload is the Via, the content type (ExtensibleEncoding), the
	// envelope, the fault URI or the upgrade protocol (UpgradeRequest);
	// nil for the other records.
	Payload []byte
}

// Reader reads the records of a session in any order, leaving it to the
// caller to check the sequence. It buffers its input.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
	err error
}

// NewReader returns a Reader of r whose envelopes may hold at most
// maxPayload bytes (DefaultMaxMessageSize if maxPayload <= 0).
func NewReader(r io.Reader, maxPayload int) *Reader {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxMessageSize
	}
	return &Reader{r: bufio.NewReader(r), max: maxPayload}
}

// Next reads the next record; its Payload is valid until the next call.
//
// Input that ends between records gives io.EOF, inside a record
// io.ErrUnexpectedEOF; other read errors come back as they are. A record
// the Reader refuses gives a *DecodeError: an unknown type ("bad_record"),
// a bad length ("bad_varint"), an envelope over maxPayload
// ("message_too_large", fault MaxMessageSizeExceededFault), or a string
// over WCF's limit: a Via over MaxViaLength ("via_too_long", ViaTooLong), a
// content type or upgrade over MaxContentTypeLength (ContentTypeTooLong), a
// fault over MaxFaultLength. Payload sizes are checked before the payload
// is read. The first error ends the stream: Next keeps returning it.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		return Record{}, err
	}
	return rec, nil
}

func (r *Reader) next() (rec Record, err error) {
	if rec.Type, err = r.r.ReadByte(); err != nil {
		return rec, err
	}
	switch rec.Type {
	case RecVersion:
		if rec.Value, err = r.byte(); err == nil {
			rec.Value2, err = r.byte()
		}
		return rec, err
	case RecMode, RecKnownEncoding:
		rec.Value, err = r.byte()
		return rec, err
	case RecEnd, RecUpgradeResponse, RecPreambleAck, RecPreambleEnd:
		return rec, nil
	}
	// The rest carry a payload.
	r.buf = r.buf[:0]
	switch rec.Type {
	case RecVia:
		err = r.sized("Via", MaxViaLength, "via_too_long", FaultViaTooLong)
	case RecExtensibleEncoding:
		err = r.sized("content type", MaxContentTypeLength, "bad_encoding", FaultContentTypeTooLong)
	case RecUpgradeRequest:
		// WCF reads upgrade names with its content type decoder.
		err = r.sized("upgrade", MaxContentTypeLength, "bad_record", FaultContentTypeTooLong)
	case RecFault:
		err = r.sized("fault", MaxFaultLength, "bad_record", "")
	case RecSizedEnvelope:
		err = r.sized("envelope", r.max, "message_too_large", FaultMaxMessageSizeExceeded)
	case RecUnsizedEnvelope:
		err = r.chunks()
	default:
		return rec, &DecodeError{Reason: "bad_record", Detail: fmt.Sprintf("unknown record type 0x%02x", rec.Type)}
	}
	rec.Payload = r.buf
	return rec, err
}

// chunks reads the data chunks of an unsized envelope up to the empty chunk
// that ends it; together they may hold at most r.max bytes.
func (r *Reader) chunks() error {
	for {
		n, err := r.varint()
		if err != nil || n == 0 {
			return err
		}
		if err := r.read(n, "envelope", r.max, "message_too_large", FaultMaxMessageSizeExceeded); err != nil {
			return err
		}
	}
}

// sized reads a length and that many bytes into r.buf.
func (r *Reader) sized(what string, limit int, reason, fault string) error {
	n, err := r.varint()
	if err != nil {
		return err
	}
	return r.read(n, what, limit, reason, fault)
}

// read appends n more bytes to r.buf unless that would take it over limit.
func (r *Reader) read(n int, what string, limit int, reason, fault string) error {
	have := len(r.buf)
	if n > limit-have {
		return &DecodeError{Reason: reason, Fault: fault,
			Detail: fmt.Sprintf("%s of %d bytes, limit %d", what, have+n, limit)}
	}
	r.buf = slices.Grow(r.buf, n)[:have+n]
	_, err := io.ReadFull(r.r, r.buf[have:])
	return noEOF(err)
}

func (r *Reader) byte() (byte, error) {
	c, err := r.r.ReadByte()
	return c, noEOF(err)
}

func (r *Reader) varint() (int, error) {
	var d varintDecoder
	for {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		done, err := d.feed(c)
		if err != nil {
			return 0, &DecodeError{Reason: "bad_varint", Detail: err.Error()}
		}
		if done {
			return d.value(), nil
		}
	}
}

// noEOF turns io.EOF, which inside a record means a truncated one, into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
