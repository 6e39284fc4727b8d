package nmf

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestVarintRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		v   int
		enc []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{127, []byte{0x7F}},
		{128, []byte{0x80, 0x01}},
		{29, []byte{0x1D}},
		{2048, []byte{0x80, 0x10}},
		{16383, []byte{0xFF, 0x7F}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{1<<28 - 1, []byte{0xFF, 0xFF, 0xFF, 0x7F}},
		{1 << 28, []byte{0x80, 0x80, 0x80, 0x80, 0x01}},
		{math.MaxInt32, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0x07}},
	} {
		enc := AppendVarint([]byte{0xAA}, tc.v)
		require.Equal(t, append([]byte{0xAA}, tc.enc...), enc, "encode %d", tc.v)
		v, n, err := DecodeVarint(append(tc.enc, 0x55)) // a trailing byte is not read
		require.NoError(t, err, "decode %d", tc.v)
		assert.Equal(t, tc.v, v)
		assert.Equal(t, len(tc.enc), n)
		assert.LessOrEqual(t, n, MaxVarintLen)
	}
}

func TestDecodeVarintErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrShortVarint},
		{"truncated 1", []byte{0x80}, ErrShortVarint},
		{"truncated 4", []byte{0xFF, 0xFF, 0xFF, 0xFF}, ErrShortVarint},
		{"MaxInt32+1", []byte{0x80, 0x80, 0x80, 0x80, 0x08}, ErrBadVarint},
		{"MaxUint32", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, ErrBadVarint},
		{"5th byte continues", []byte{0x80, 0x80, 0x80, 0x80, 0x80}, ErrBadVarint},
		{"6 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, ErrBadVarint},
		{"5 bytes overflow", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, ErrBadVarint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeVarint(tc.in)
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func TestDecodeVarintNonMinimal(t *testing.T) {
	// WCF accepts padded encodings, so a router must too.
	v, n, err := DecodeVarint([]byte{0x9D, 0x80, 0x00})
	require.NoError(t, err)
	assert.Equal(t, 29, v)
	assert.Equal(t, 3, n)
}

func TestAppendVarintPanics(t *testing.T) {
	assert.Panics(t, func() { AppendVarint(nil, -1) })
	assert.Panics(t, func() { AppendVarint(nil, math.MaxInt32+1) })
}

func TestFaults(t *testing.T) {
	names := map[string]string{
		FaultContentTypeInvalid:       "ContentTypeInvalid",
		FaultContentTypeTooLong:       "ContentTypeTooLong",
		FaultConnectionDispatchFailed: "ConnectionDispatchFailed",
		FaultEndpointNotFound:         "EndpointNotFound",
		FaultEndpointUnavailable:      "EndpointUnavailable",
		FaultMaxMessageSizeExceeded:   "MaxMessageSizeExceededFault",
		FaultServerTooBusy:            "ServerTooBusy",
		FaultServiceActivationFailed:  "ServiceActivationFailed",
		FaultUnsupportedMode:          "UnsupportedMode",
		FaultUnsupportedVersion:       "UnsupportedVersion",
		FaultUpgradeInvalid:           "UpgradeInvalid",
		FaultViaTooLong:               "ViaTooLong",
	}
	require.Len(t, names, 12)
	for got, want := range names {
		assert.Equal(t, want, got)
		uri := FaultURI(got)
		assert.Equal(t, "http://schemas.microsoft.com/ws/2006/05/framing/faults/"+want, uri)
		assert.Equal(t, got, FaultName(uri))
	}
	assert.Equal(t, "urn:other", FaultName("urn:other"))

	// 0x47: the URI is 71 bytes.
	want := append([]byte{RecFault, 0x47}, "http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound"...)
	assert.Equal(t, want, AppendFault(nil, FaultEndpointNotFound))
}

func TestAppendRecords(t *testing.T) {
	assert.Equal(t, []byte{0x07}, AppendEnd(nil))
	assert.Equal(t, []byte{0x0B}, AppendPreambleAck(nil))
	assert.Equal(t, []byte{0x06, 0x03, 'a', 'b', 'c'}, AppendSizedEnvelope(nil, []byte("abc")))
	assert.Equal(t, []byte{0x06, 0x00}, AppendSizedEnvelope(nil, nil))
	big := AppendSizedEnvelope(nil, make([]byte, 200))
	assert.Equal(t, []byte{0x06, 0xC8, 0x01}, big[:3])
	assert.Len(t, big, 203)
}

func TestModeString(t *testing.T) {
	assert.Equal(t, "SingletonUnsized", ModeSingletonUnsized.String())
	assert.Equal(t, "Duplex", ModeDuplex.String())
	assert.Equal(t, "Simplex", ModeSimplex.String())
	assert.Equal(t, "SingletonSized", ModeSingletonSized.String())
	assert.Equal(t, "Mode(0x09)", Mode(9).String())
}
