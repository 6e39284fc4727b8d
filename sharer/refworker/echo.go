package refworker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/portshare/portshare/sharer/nmf"
)

// Bounds of the drain after a fault, WCF's: the client gets this long to
// read the fault and close, and may send this much meanwhile.
const (
	faultDrainTimeout = time.Minute
	faultDrainBytes   = 64 << 10
)

// ServeEcho speaks the server side of an MC-NMF duplex session on conn, as a
// WCF NetTcpBinding service would, and closes conn when done.
//
// It reads the preamble (Version, Mode, Via, KnownEncoding or
// ExtensibleEncoding, PreambleEnd) and answers PreambleAck; then it answers
// each SizedEnvelope with payload P with a SizedEnvelope with payload
// name+":"+P, and an End with End, after which it closes. Refused input is
// answered with a fault where WCF sends one: a major version other than 1
// gets UnsupportedVersion, a mode other than Duplex UnsupportedMode, an
// UpgradeRequest UpgradeInvalid (no upgrades are offered), an envelope over
// maxMessage bytes (nmf.DefaultMaxMessageSize if maxMessage <= 0)
// MaxMessageSizeExceededFault, a too-long Via or content type ViaTooLong or
// ContentTypeTooLong. Any other unexpected record, and any I/O error, just
// closes the connection.
//
// With idle > 0 each record must arrive, and each reply be written, within
// idle; with idle <= 0 the caller's deadlines on conn are left alone, so
// without them a silent client holds the call forever.
//
// It returns nil after a clean End; otherwise the error that ended the
// session: a *nmf.DecodeError for refused input, io.EOF or
// io.ErrUnexpectedEOF when the client went away, or the I/O error.
func ServeEcho(conn net.Conn, name string, maxMessage int, idle time.Duration) error {
	defer conn.Close()
	s := &echoSession{conn: conn, r: nmf.NewReader(conn, maxMessage), idle: idle}
	err := s.run(name)
	if de, ok := errors.AsType[*nmf.DecodeError](err); ok && de.Fault != "" {
		s.fault(de.Fault)
	}
	return err
}

type echoSession struct {
	conn net.Conn
	r    *nmf.Reader
	idle time.Duration
	out  []byte // the last record sent, kept for its capacity
}

func (s *echoSession) run(name string) error {
	rec, err := s.expect(nmf.RecVersion)
	if err != nil {
		return err
	}
	if rec.Value != 1 {
		return &nmf.DecodeError{Reason: "unsupported_version", Fault: nmf.FaultUnsupportedVersion,
			Detail: fmt.Sprintf("major version %d", rec.Value)}
	}
	if rec, err = s.expect(nmf.RecMode); err != nil {
		return err
	}
	if m := nmf.Mode(rec.Value); m != nmf.ModeDuplex {
		return &nmf.DecodeError{Reason: "unsupported_mode", Fault: nmf.FaultUnsupportedMode, Detail: "mode " + m.String()}
	}
	if _, err = s.expect(nmf.RecVia); err != nil {
		return err
	}
	if _, err = s.expect(nmf.RecKnownEncoding, nmf.RecExtensibleEncoding); err != nil {
		return err
	}
	if rec, err = s.expect(nmf.RecPreambleEnd, nmf.RecUpgradeRequest); err != nil {
		return err
	}
	if rec.Type == nmf.RecUpgradeRequest {
		return &nmf.DecodeError{Reason: "bad_record", Fault: nmf.FaultUpgradeInvalid,
			Detail: fmt.Sprintf("upgrade %q not offered", rec.Payload)}
	}
	if err := s.send(nmf.AppendPreambleAck(s.out[:0])); err != nil {
		return err
	}

	reply := []byte(name + ":")
	prefix := len(reply)
	for {
		rec, err := s.expect(nmf.RecSizedEnvelope, nmf.RecEnd)
		if err != nil {
			return err
		}
		if rec.Type == nmf.RecEnd {
			return s.send(nmf.AppendEnd(s.out[:0]))
		}
		reply = append(reply[:prefix], rec.Payload...)
		if err := s.send(nmf.AppendSizedEnvelope(s.out[:0], reply)); err != nil {
			return err
		}
	}
}

// expect reads the next record, which must be of one of the given types.
func (s *echoSession) expect(types ...byte) (nmf.Record, error) {
	if s.idle > 0 {
		s.conn.SetReadDeadline(time.Now().Add(s.idle))
	}
	rec, err := s.r.Next()
	if err != nil {
		return rec, err
	}
	for _, t := range types {
		if rec.Type == t {
			return rec, nil
		}
	}
	return rec, &nmf.DecodeError{Reason: "bad_record", Detail: fmt.Sprintf("unexpected record 0x%02x", rec.Type)}
}

// send writes b, which it keeps for reuse.
func (s *echoSession) send(b []byte) error {
	s.out = b
	if s.idle > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(s.idle))
	}
	_, err := s.conn.Write(b)
	return err
}

// fault sends the fault record. Then, as WCF does, it stops sending and
// drains the input (bounded by faultDrainBytes and by idle or
// faultDrainTimeout, whichever is shorter) so that closing a socket with
// unread input does not reset the connection before the client has read the
// fault. Without CloseWrite on conn there is no drain.
func (s *echoSession) fault(name string) {
	if s.send(nmf.AppendFault(s.out[:0], name)) != nil {
		return
	}
	cw, ok := s.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	wait := faultDrainTimeout
	if s.idle > 0 {
		wait = min(wait, s.idle)
	}
	s.conn.SetReadDeadline(time.Now().Add(wait))
	io.Copy(io.Discard, io.LimitReader(s.conn, faultDrainBytes))
}
