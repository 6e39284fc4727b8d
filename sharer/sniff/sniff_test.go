package sniff

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// result is one outcome of a Sniffer, comparable with assert.Equal.
type result struct {
	Key  Key
	Done bool
	Err  error
}

// sniffChunks feeds data to a new Sniffer in pieces of size n (the last may
// be shorter) and stops at the first result, as the daemon does.
func sniffChunks(l Limits, data []byte, n int) result {
	s := New(l)
	for len(data) > 0 {
		c := min(n, len(data))
		key, done, err := s.Feed(data[:c])
		if done || err != nil {
			return result{key, done, err}
		}
		data = data[c:]
	}
	return result{}
}

func sniffWhole(l Limits, data []byte) result { return sniffChunks(l, data, max(len(data), 1)) }

func sniffBytewise(l Limits, data []byte) result { return sniffChunks(l, data, 1) }

// requireError asserts r is a refusal with the given protocol, reason and
// HTTP status.
func requireError(t *testing.T, r result, p Protocol, reason string, status int) {
	t.Helper()
	require.False(t, r.Done)
	var e *Error
	require.ErrorAs(t, r.Err, &e)
	assert.Equal(t, p, e.Protocol)
	assert.Equal(t, reason, e.Reason, e.Detail)
	assert.Equal(t, status, e.Status)
	assert.Empty(t, e.Fault)
}

func TestSnifferUnknownProtocol(t *testing.T) {
	for _, first := range []byte{0x01, 0x15, 0x80, '0', ' ', '\t', 0xff} {
		s := New(Limits{})
		_, done, err := s.Feed([]byte{first, 'x', 'y'})
		require.False(t, done)
		var e *Error
		require.ErrorAs(t, err, &e, "first byte %#x", first)
		assert.Equal(t, Error{Reason: "unknown_protocol", Detail: e.Detail}, *e)
		assert.Contains(t, e.Error(), "unknown_protocol")
		assert.Equal(t, Unknown, s.Protocol())
	}
}

func TestSnifferDispatch(t *testing.T) {
	for _, tc := range []struct {
		first byte
		want  Protocol
	}{
		{0x00, NetTCP},
		{0x16, TLS},
		{'G', HTTP},
		{'A', HTTP},
		{'Z', HTTP},
	} {
		s := New(Limits{})
		assert.Equal(t, Unknown, s.Protocol())
		_, _, err := s.Feed([]byte{tc.first})
		require.NoError(t, err)
		assert.Equal(t, tc.want, s.Protocol(), "first byte %#x", tc.first)
	}
}

func TestSnifferEmptyFeedWaits(t *testing.T) {
	s := New(Limits{})
	key, done, err := s.Feed(nil)
	require.NoError(t, err)
	assert.False(t, done)
	assert.Equal(t, Key{}, key)
	assert.Equal(t, Unknown, s.Protocol())
}

func TestSnifferFeedAfterResult(t *testing.T) {
	s := New(Limits{})
	_, done, err := s.Feed([]byte("GET / HTTP/1.0\r\n\r\n"))
	require.NoError(t, err)
	require.True(t, done)
	_, _, err = s.Feed([]byte("more"))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "internal", e.Reason)

	s = New(Limits{})
	_, _, err = s.Feed([]byte{0x7f})
	require.Error(t, err)
	_, _, err = s.Feed([]byte("more"))
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "internal", e.Reason)
}

func TestProtocolString(t *testing.T) {
	assert.Equal(t, "net.tcp", NetTCP.String())
	assert.Equal(t, "http", HTTP.String())
	assert.Equal(t, "tls", TLS.String())
	assert.Equal(t, "unknown", Unknown.String())
}

func TestErrorString(t *testing.T) {
	assert.Equal(t, "http: bad_request", (&Error{Protocol: HTTP, Reason: "bad_request"}).Error())
	assert.Equal(t, "tls: bad_tls: why", (&Error{Protocol: TLS, Reason: "bad_tls", Detail: "why"}).Error())
}
