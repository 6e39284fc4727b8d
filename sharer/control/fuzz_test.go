package control

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: Decode never panics; what it accepts splits the message
// exactly into prefix, header and payload, and Encode of a decoded message
// with a JSON header gives the header back.
func FuzzDecode(f *testing.F) {
	for _, seed := range []struct {
		t       Type
		header  any
		payload string
	}{
		{TypeHandoff, Handoff{ID: 1, Route: "net.tcp://+:8808/x/"}, "\x00\x01\x00"},
		{TypeRegister, Register{Name: "n", Routes: []string{"http://+:80/"}}, ""},
		{TypeStatus, Status{}, ""},
	} {
		msg, err := Encode(nil, seed.t, seed.header, []byte(seed.payload))
		require.NoError(f, err)
		f.Add(msg)
	}
	f.Add([]byte{})
	f.Add([]byte{Version, byte(TypeAck), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{Version + 1, byte(TypeAck), 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		typ, header, payload, err := Decode(msg)
		if err != nil {
			require.Nil(t, header)
			require.Nil(t, payload)
			if len(msg) >= headerPrefix && msg[0] != Version {
				require.True(t, errors.Is(err, ErrVersion), "%v", err)
			}
			return
		}
		require.Equal(t, byte(Version), msg[0])
		require.Equal(t, Type(msg[1]), typ)
		require.Equal(t, len(msg), headerPrefix+len(header)+len(payload))
		m := Message{Type: typ, Header: header, Payload: payload, FD: -1}
		var v any
		if m.Unmarshal(&v) == nil && len(msg) <= MaxMessage {
			again, err := Encode(nil, typ, v, payload)
			if err == nil { // re-marshalling may grow the header past MaxMessage
				typ2, _, payload2, err := Decode(again)
				require.NoError(t, err)
				require.Equal(t, typ, typ2)
				require.Equal(t, string(payload), string(payload2))
			}
		}
	})
}
