package control

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		t       Type
		header  any
		payload []byte
	}{
		{TypeRegister, Register{Name: "api", Routes: []string{"http://+:8080/api/"}, MaxInflight: 4, PID: 7}, nil},
		{TypeRegistered, Registered{ID: 1, Routes: []string{"http://+:8080/api/"}, Policy: "reclaim", MaxInflight: 4}, nil},
		{TypeError, Error{Code: CodeBackoff, Message: "wait", RetryAfterMS: 30000}, nil},
		{TypeUnregister, Unregister{Routes: []string{"a", "b"}}, nil},
		{TypeUnregistered, Unregistered{Routes: []string{"a"}}, nil},
		{TypeHandoff, Handoff{ID: 9, Route: "net.tcp://+:8808/x/", Via: "net.tcp://h:8808/x/y", Local: "127.0.0.1:8808", Remote: "127.0.0.1:5000", Deadline: 1 << 62},
			[]byte("\x00\x01\x00\x01\x02\x02")},
		{TypeAck, Ack{ID: 9, Expired: true}, nil},
		{TypeEvicted, Evicted{Reason: "dispatch timeout", RetryAfterMS: 5}, nil},
		{TypeStatus, Status{}, nil},
		{TypeStatusReply, StatusReply{Part: 2, Last: true}, bytes.Repeat([]byte("{}"), 1000)},
	} {
		prefix := []byte("keep")
		msg, err := Encode(append([]byte(nil), prefix...), tc.t, tc.header, tc.payload)
		require.NoError(t, err, "%s", tc.t)
		require.Equal(t, prefix, msg[:len(prefix)], "Encode appends")
		typ, header, payload, err := Decode(msg[len(prefix):])
		require.NoError(t, err, "%s", tc.t)
		assert.Equal(t, tc.t, typ)
		assert.Equal(t, len(tc.payload), len(payload))
		if len(tc.payload) > 0 {
			assert.Equal(t, tc.payload, payload)
		}
		want, err := json.Marshal(tc.header)
		require.NoError(t, err)
		assert.JSONEq(t, string(want), string(header), "%s", tc.t)
	}
}

func TestTypeString(t *testing.T) {
	assert.Equal(t, "handoff", TypeHandoff.String())
	assert.Equal(t, "status_reply", TypeStatusReply.String())
	assert.Equal(t, "type(200)", Type(200).String())
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(nil, TypeAck, Ack{ID: 1}, []byte("p"))
	require.NoError(t, err)

	for _, short := range [][]byte{nil, {}, good[:1], good[:headerPrefix-1]} {
		_, _, _, err := Decode(short)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "short message")
	}

	other := append([]byte(nil), good...)
	other[0] = Version + 1
	_, _, _, err = Decode(other)
	require.ErrorIs(t, err, ErrVersion)
	assert.Contains(t, err.Error(), "version 2 (this side speaks 1)")

	for _, n := range []uint32{uint32(len(good) - headerPrefix + 1), 1 << 31, 1<<32 - 1} {
		lying := append([]byte(nil), good...)
		binary.BigEndian.PutUint32(lying[2:6], n)
		_, _, _, err = Decode(lying)
		require.Error(t, err, "header length %d", n)
		assert.Contains(t, err.Error(), "exceeds message")
	}

	// A header length that takes the whole rest leaves an empty payload.
	exact := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(exact[2:6], uint32(len(good)-headerPrefix))
	typ, header, payload, err := Decode(exact)
	require.NoError(t, err)
	assert.Equal(t, TypeAck, typ)
	assert.Equal(t, `{"id":1}p`, string(header))
	assert.Empty(t, payload)
}

func TestEncodeLimits(t *testing.T) {
	h, err := json.Marshal(StatusReply{})
	require.NoError(t, err)
	room := MaxMessage - headerPrefix - len(h)

	msg, err := Encode(nil, TypeStatusReply, StatusReply{}, make([]byte, room))
	require.NoError(t, err)
	assert.Len(t, msg, MaxMessage)

	prefix := []byte("keep")
	msg, err = Encode(prefix, TypeStatusReply, StatusReply{}, make([]byte, room+1))
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "exceeds 65536")
	assert.Equal(t, prefix, msg, "nothing appended on error")

	_, err = Encode(nil, TypeAck, make(chan int), nil)
	require.Error(t, err, "a header that is not JSON")
}

func TestMessageUnmarshal(t *testing.T) {
	m := Message{Type: TypeHandoff, Header: []byte(`{"id":3,"route":"r"}`), FD: -1}
	var h Handoff
	require.NoError(t, m.Unmarshal(&h))
	assert.Equal(t, Handoff{ID: 3, Route: "r"}, h)

	m.Header = []byte(`{"id":"x"`)
	err := m.Unmarshal(&h)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad handoff header")
}
