package sniff

import (
	"strings"
	"testing"

	"github.com/portshare/portshare/sharer/nmf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/route"
)

const stockVia = "net.tcp://localhost:8898/Demo"

// stockPreamble is what a stock WCF NetTcpBinding client sends first.
var stockPreamble = append(append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x1D}, stockVia...), 0x03, 0x08, 0x0C)

func duplexPreamble(via string) []byte {
	return nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: via, Encoding: nmf.EncodingBinarySession})
}

func TestNetTCPStockPreamble(t *testing.T) {
	want := result{Key: Key{Protocol: NetTCP, Host: "localhost", Port: 8898, Path: "/Demo", Via: stockVia}, Done: true}
	assert.Equal(t, want, sniffWhole(Limits{}, stockPreamble))
	assert.Equal(t, want, sniffBytewise(Limits{}, stockPreamble))

	s := New(Limits{})
	for i, c := range stockPreamble {
		key, done, err := s.Feed([]byte{c})
		require.NoError(t, err)
		assert.Equal(t, NetTCP, s.Protocol())
		// Duplex is routable right after the encoding record (03 08):
		// the PreambleEnd is left to the worker.
		if done {
			assert.Equal(t, len(stockPreamble)-2, i)
			assert.Equal(t, want.Key, key)
			return
		}
	}
	t.Fatal("never done")
}

func TestNetTCPKeys(t *testing.T) {
	for _, tc := range []struct {
		mode nmf.Mode
		via  string
		want Key
	}{
		{nmf.ModeSingletonUnsized, "net.tcp://h:1/s/", Key{Host: "h", Port: 1, Path: "/s/"}},
		{nmf.ModeDuplex, "net.tcp://Orders.Example/Svc/A?x=1#f", Key{Host: "Orders.Example", Path: "/Svc/A"}},
		{nmf.ModeDuplex, "net.tcp://[::1]:808", Key{Host: "::1", Port: 808, Path: "/"}},
		{nmf.ModeDuplex, "net.tcp://h/a%2Fb/c%20d", Key{Host: "h", Path: "/a%2Fb/c%20d"}},
		{nmf.ModeDuplex, "net.tcp://h/zürich", Key{Host: "h", Path: "/zürich"}},
		{nmf.ModeDuplex, "net.tcp://h?/x", Key{Host: "h", Path: "/"}},
		{nmf.ModeDuplex, "net.tcp://u@h:1#/x", Key{Host: "h", Port: 1, Path: "/"}},
		{nmf.ModeDuplex, "net.tcp:/rooted?q", Key{Path: "/rooted"}},
		{nmf.ModeDuplex, "urn:opaque/x", Key{Path: "/"}},
	} {
		in := nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: tc.mode, Via: tc.via})
		want := tc.want
		want.Protocol, want.Via = NetTCP, tc.via
		r := sniffBytewise(Limits{}, in)
		require.True(t, r.Done, "%q: %v", tc.via, r.Err)
		assert.Equal(t, want, r.Key)
		assert.Equal(t, r, sniffWhole(Limits{}, in))
	}
}

func TestNetTCPErrors(t *testing.T) {
	longVia := "net.tcp://h/" + strings.Repeat("a", nmf.MaxViaLength-11)
	for _, tc := range []struct {
		name   string
		in     []byte
		reason string
		fault  string
	}{
		{"major version 0", []byte{0x00, 0x00, 0x00}, "unsupported_version", nmf.FaultUnsupportedVersion},
		{"bad record", []byte{0x00, 0x01, 0x00, 0x07}, "bad_record", ""},
		{"mode 3", []byte{0x00, 0x01, 0x00, 0x01, 0x03}, "unsupported_mode", nmf.FaultUnsupportedMode},
		{"Via of 2049 bytes", duplexPreamble(longVia), "via_too_long", nmf.FaultViaTooLong},
		{"relative Via", duplexPreamble("/Demo"), "bad_via", ""},
		{"bad Via length", []byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, "bad_varint", ""},
		{"unknown encoding", append(duplexPreamble("net.tcp://h/")[:19], 0x03, 0x42), "bad_encoding", nmf.FaultContentTypeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sniffWhole(Limits{}, tc.in)
			require.False(t, r.Done)
			var e *Error
			require.ErrorAs(t, r.Err, &e)
			assert.Equal(t, NetTCP, e.Protocol)
			assert.Equal(t, tc.reason, e.Reason, e.Detail)
			assert.Equal(t, tc.fault, e.Fault)
			assert.Zero(t, e.Status)
			assert.NotEmpty(t, e.Detail)
			assert.Equal(t, r, sniffBytewise(Limits{}, tc.in))
		})
	}
}

func TestNetTCPIncomplete(t *testing.T) {
	for i := 1; i < len(stockPreamble)-2; i++ {
		assert.Equal(t, result{}, sniffWhole(Limits{}, stockPreamble[:i]), "prefix of %d", i)
	}
}

// FuzzSniffNetTCP checks that no input panics, that whole and byte-at-a-time
// feeding agree, and that results keep the package's contract.
func FuzzSniffNetTCP(f *testing.F) {
	f.Add(stockPreamble)
	f.Add(nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeSingletonUnsized, Via: "net.tcp://+:1/x?y"}))
	f.Add(nmf.AppendPreamble(nil, nmf.Preamble{Major: 1, Mode: nmf.ModeDuplex, Via: "net.tcp://[fe80::1%25eth0]/", ContentType: "text/xml"}))
	f.Add([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x81, 0x10})
	f.Add([]byte{0x00, 0x01, 0x00, 0x01, 0x03})
	reasons := []string{"bad_record", "unsupported_version", "unsupported_mode", "via_too_long", "bad_via", "bad_varint", "bad_encoding"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != 0x00 {
			return // not net.tcp: another parser's business
		}
		whole := sniffWhole(Limits{}, data)
		require.Equal(t, whole, sniffBytewise(Limits{}, data))
		switch {
		case whole.Done:
			assert.Equal(t, NetTCP, whole.Key.Protocol)
			assert.True(t, strings.HasPrefix(whole.Key.Path, "/"), "path %q", whole.Key.Path)
			assert.NotContains(t, whole.Key.Path, "?")
			canon, ok := route.CanonicalPath(whole.Key.Path)
			assert.True(t, ok && canon == whole.Key.Path, "path %q of %q is canonical", whole.Key.Path, whole.Key.Via)
			assert.True(t, whole.Key.Port >= 0 && whole.Key.Port <= 65535)
			assert.LessOrEqual(t, len(whole.Key.Via), nmf.MaxViaLength)
		case whole.Err != nil:
			var e *Error
			require.ErrorAs(t, whole.Err, &e)
			assert.Equal(t, NetTCP, e.Protocol)
			assert.Contains(t, reasons, e.Reason)
		}
	})
}

func BenchmarkSniffNetTCP(b *testing.B) {
	b.SetBytes(int64(len(stockPreamble)))
	b.ReportAllocs()
	for b.Loop() {
		if r := sniffWhole(Limits{}, stockPreamble); !r.Done {
			b.Fatal(r.Err)
		}
	}
}
