package nmf

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll reads records until an error and returns them with the error;
// payloads are copied because the Reader reuses its buffer, and empty ones
// made nil.
func readAll(r *Reader) ([]Record, error) {
	var recs []Record
	for {
		rec, err := r.Next()
		if err != nil {
			return recs, err
		}
		rec.Payload = bytes.Clone(rec.Payload)
		if len(rec.Payload) == 0 {
			rec.Payload = nil
		}
		recs = append(recs, rec)
	}
}

func str(t byte, s string) []byte { return appendString(nil, t, s) }

func TestReaderEveryRecordType(t *testing.T) {
	var in []byte
	in = append(in, RecVersion, 1, 2)
	in = append(in, RecMode, 2)
	in = append(in, str(RecVia, stockVia)...)
	in = append(in, RecKnownEncoding, 8)
	in = append(in, str(RecExtensibleEncoding, "text/xml")...)
	in = append(in, RecUnsizedEnvelope, 2, 'a', 'b', 1, 'c', 0)
	in = AppendSizedEnvelope(in, []byte("hello"))
	in = AppendEnd(in)
	in = AppendFault(in, FaultServerTooBusy)
	in = append(in, str(RecUpgradeRequest, "application/ssl-tls")...)
	in = append(in, RecUpgradeResponse)
	in = AppendPreambleAck(in)
	in = append(in, RecPreambleEnd)
	in = AppendSizedEnvelope(in, nil)
	in = append(in, RecUnsizedEnvelope, 0)

	want := []Record{
		{Type: RecVersion, Value: 1, Value2: 2},
		{Type: RecMode, Value: 2},
		{Type: RecVia, Payload: []byte(stockVia)},
		{Type: RecKnownEncoding, Value: 8},
		{Type: RecExtensibleEncoding, Payload: []byte("text/xml")},
		{Type: RecUnsizedEnvelope, Payload: []byte("abc")},
		{Type: RecSizedEnvelope, Payload: []byte("hello")},
		{Type: RecEnd},
		{Type: RecFault, Payload: []byte(FaultURI(FaultServerTooBusy))},
		{Type: RecUpgradeRequest, Payload: []byte("application/ssl-tls")},
		{Type: RecUpgradeResponse},
		{Type: RecPreambleAck},
		{Type: RecPreambleEnd},
		{Type: RecSizedEnvelope},
		{Type: RecUnsizedEnvelope},
	}
	for name, r := range map[string]io.Reader{
		"whole":       bytes.NewReader(in),
		"byte a time": iotest.OneByteReader(bytes.NewReader(in)),
	} {
		recs, err := readAll(NewReader(r, 16))
		require.ErrorIs(t, err, io.EOF, name)
		assert.Equal(t, want, recs, name)
	}
}

func TestReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		reason string
		fault  string
		err    error // for non-DecodeErrors
	}{
		{"empty input", nil, "", "", io.EOF},
		{"unknown type 0x0D", []byte{0x0D}, "bad_record", "", nil},
		{"unknown type 0xFF", []byte{0xFF}, "bad_record", "", nil},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), "bad_record", "", nil},
		{"sized envelope over max", []byte{RecSizedEnvelope, 9}, "message_too_large", FaultMaxMessageSizeExceeded, nil},
		{"sized envelope of MaxInt32", []byte{RecSizedEnvelope, 0xFF, 0xFF, 0xFF, 0xFF, 0x07}, "message_too_large", FaultMaxMessageSizeExceeded, nil},
		{"unsized envelope over max", []byte{RecUnsizedEnvelope, 5, 1, 2, 3, 4, 5, 4}, "message_too_large", FaultMaxMessageSizeExceeded, nil},
		{"Via too long", []byte{RecVia, 0x81, 0x10}, "via_too_long", FaultViaTooLong, nil},
		{"content type too long", []byte{RecExtensibleEncoding, 0x81, 0x02}, "bad_encoding", FaultContentTypeTooLong, nil},
		{"upgrade too long", []byte{RecUpgradeRequest, 0x81, 0x02}, "bad_record", FaultContentTypeTooLong, nil},
		{"fault too long", []byte{RecFault, 0x81, 0x02}, "bad_record", "", nil},
		{"bad varint", []byte{RecSizedEnvelope, 0x80, 0x80, 0x80, 0x80, 0x10}, "bad_varint", "", nil},
		{"truncated version", []byte{RecVersion, 1}, "", "", io.ErrUnexpectedEOF},
		{"truncated mode", []byte{RecMode}, "", "", io.ErrUnexpectedEOF},
		{"truncated varint", []byte{RecVia, 0x80}, "", "", io.ErrUnexpectedEOF},
		{"truncated payload", []byte{RecSizedEnvelope, 3, 'a'}, "", "", io.ErrUnexpectedEOF},
		{"unsized envelope without end", []byte{RecUnsizedEnvelope, 1, 'a'}, "", "", io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in), 8)
			_, err := r.Next()
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				var e *DecodeError
				require.ErrorAs(t, err, &e)
				assert.Equal(t, tc.reason, e.Reason, e.Detail)
				assert.Equal(t, tc.fault, e.Fault)
			}
			_, again := r.Next()
			assert.Equal(t, err, again, "errors are sticky")
		})
	}
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(bytes.NewReader([]byte{RecSizedEnvelope, 3, 'a'}), iotest.ErrReader(boom)), 8)
	_, err := r.Next()
	require.ErrorIs(t, err, boom)
}

func TestReaderDefaultMax(t *testing.T) {
	in := AppendSizedEnvelope(nil, make([]byte, DefaultMaxMessageSize))
	in = AppendSizedEnvelope(in, make([]byte, DefaultMaxMessageSize+1))
	r := NewReader(bytes.NewReader(in), 0)
	rec, err := r.Next()
	require.NoError(t, err)
	assert.Len(t, rec.Payload, DefaultMaxMessageSize)
	_, err = r.Next()
	var e *DecodeError
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "message_too_large", e.Reason)
}

func TestReaderStringsAtTheirLimits(t *testing.T) {
	in := str(RecVia, strings.Repeat("v", MaxViaLength))
	in = append(in, str(RecExtensibleEncoding, strings.Repeat("c", MaxContentTypeLength))...)
	in = append(in, str(RecFault, strings.Repeat("f", MaxFaultLength))...)
	recs, err := readAll(NewReader(bytes.NewReader(in), 1))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, 3)
	assert.Len(t, recs[0].Payload, MaxViaLength)
	assert.Len(t, recs[1].Payload, MaxContentTypeLength)
	assert.Len(t, recs[2].Payload, MaxFaultLength)
}

// FuzzReader checks that any input reads the same whole and byte at a time,
// ends in io.EOF, io.ErrUnexpectedEOF or a *DecodeError, and yields no
// envelope over the limit.
func FuzzReader(f *testing.F) {
	f.Add(append(bytes.Clone(stockPreamble), AppendEnd(AppendSizedEnvelope(nil, []byte("hi")))...))
	f.Add(AppendFault(nil, FaultEndpointNotFound))
	f.Add([]byte{RecUnsizedEnvelope, 2, 'a', 'b', 0, RecEnd})
	f.Add([]byte{RecSizedEnvelope, 0xFF, 0xFF, 0xFF, 0xFF, 0x07})
	const limit = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := readAll(NewReader(bytes.NewReader(data), limit))
		recs1, err1 := readAll(NewReader(iotest.OneByteReader(bytes.NewReader(data)), limit))
		require.Equal(t, recs, recs1)
		require.Equal(t, err, err1)

		var e *DecodeError
		require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &e), "error %v", err)
		for _, r := range recs {
			require.LessOrEqual(t, len(r.Payload), max(limit, MaxViaLength))
		}
	})
}
