package nmf

import (
	"fmt"
	"io"
)

// FaultError is a Fault record the server sent instead of the record the
// client expected. Name is the short fault name (see FaultName).
type FaultError struct{ Name string }

func (e *FaultError) Error() string { return "nmf: server sent fault " + e.Name }

// ClientSession is the client side of a duplex session: Open sends the
// preamble and waits for PreambleAck, RoundTrip sends one SizedEnvelope and
// reads the reply, End closes the session. Timeouts are the caller's: set
// deadlines on the connection.
type ClientSession struct {
	w   io.Writer
	r   *Reader
	buf []byte
}

// Open starts a duplex session with via (binary-session encoding, as a
// stock WCF NetTcpBinding client does) and waits for PreambleAck. A Fault
// record in its place comes back as *FaultError.
func Open(rw io.ReadWriter, via string) (*ClientSession, error) {
	return OpenWith(rw, AppendPreamble(nil, Preamble{Major: 1, Mode: ModeDuplex, Via: via, Encoding: EncodingBinarySession}))
}

// OpenWith is Open with a preamble the caller made (possibly malformed).
func OpenWith(rw io.ReadWriter, preamble []byte) (*ClientSession, error) {
	s := &ClientSession{w: rw, r: NewReader(rw, 0)}
	if len(preamble) > 0 {
		if _, err := rw.Write(preamble); err != nil {
			return nil, err
		}
	}
	if _, err := s.expect(RecPreambleAck); err != nil {
		return nil, err
	}
	return s, nil
}

// RoundTrip sends payload as a SizedEnvelope and returns the payload of the
// SizedEnvelope that answers it (valid until the next call).
func (s *ClientSession) RoundTrip(payload []byte) ([]byte, error) {
	s.buf = AppendSizedEnvelope(s.buf[:0], payload)
	if _, err := s.w.Write(s.buf); err != nil {
		return nil, err
	}
	rec, err := s.expect(RecSizedEnvelope)
	return rec.Payload, err
}

// End sends End and waits for the server's End.
func (s *ClientSession) End() error {
	if _, err := s.w.Write([]byte{RecEnd}); err != nil {
		return err
	}
	_, err := s.expect(RecEnd)
	return err
}

func (s *ClientSession) expect(t byte) (Record, error) {
	rec, err := s.r.Next()
	switch {
	case err != nil:
		return rec, err
	case rec.Type == RecFault:
		return rec, &FaultError{Name: FaultName(string(rec.Payload))}
	case rec.Type != t:
		return rec, fmt.Errorf("nmf: want record 0x%02x, got 0x%02x", t, rec.Type)
	}
	return rec, nil
}
