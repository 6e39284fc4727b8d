package nmf

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const stockVia = "net.tcp://localhost:8898/Demo"

// stockPreamble is what a stock WCF NetTcpBinding client sends first.
var stockPreamble = append(append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x1D}, stockVia...), 0x03, 0x08, 0x0C)

var stockFields = Preamble{Major: 1, Minor: 0, Mode: ModeDuplex, Via: stockVia, Encoding: EncodingBinarySession}

// decodeResult is the outcome of a PreambleDecoder, comparable with
// assert.Equal.
type decodeResult struct {
	Consumed int
	Done     bool
	Err      error
	Preamble Preamble
}

// decodeChunks feeds data in pieces of size n until a result, as a
// connection reader would, and counts the bytes consumed in all.
func decodeChunks(data []byte, n int) decodeResult {
	var d PreambleDecoder
	var r decodeResult
	for off := 0; off < len(data) && !r.Done && r.Err == nil; off += n {
		c, done, err := d.Feed(data[off:min(off+n, len(data))])
		r.Consumed += c
		r.Done, r.Err = done, err
	}
	r.Preamble = d.Preamble()
	return r
}

func TestStockPreambleBytes(t *testing.T) {
	assert.Equal(t, stockPreamble, AppendPreamble(nil, stockFields))
}

func TestPreambleDecoderStock(t *testing.T) {
	// The decoder stops before PreambleEnd: the worker reads that.
	want := decodeResult{Consumed: len(stockPreamble) - 1, Done: true, Preamble: stockFields}
	for _, n := range []int{len(stockPreamble), 1, 2, 7} {
		assert.Equal(t, want, decodeChunks(stockPreamble, n), "chunks of %d", n)
	}

	var d PreambleDecoder
	n, done, err := d.Feed(stockPreamble)
	require.NoError(t, err)
	require.True(t, done)
	assert.Equal(t, []byte{0x0C}, stockPreamble[n:])
	u := d.ViaURL()
	require.NotNil(t, u)
	assert.Equal(t, "localhost:8898", u.Host)
	assert.Equal(t, "/Demo", u.Path)

	// Done is sticky and consumes nothing more.
	n, done, err = d.Feed([]byte{0x0C})
	assert.Equal(t, 0, n)
	assert.True(t, done)
	assert.NoError(t, err)
}

func TestPreambleDecoderAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Preamble
		// tail is what the decoder leaves unread.
		tail []byte
	}{
		{"singleton stops after Via",
			Preamble{Major: 1, Minor: 0, Mode: ModeSingletonUnsized, Via: "net.tcp://h/s", Encoding: EncodingSOAP12UTF8},
			[]byte{0x03, 0x03, 0x0C}},
		{"minor version is free", Preamble{Major: 1, Minor: 9, Mode: ModeDuplex, Via: "net.tcp://h/", Encoding: 0}, []byte{0x0C}},
		{"every known encoding up to 8", Preamble{Major: 1, Mode: ModeDuplex, Via: "net.tcp://h/", Encoding: 8}, []byte{0x0C}},
		{"extensible encoding",
			Preamble{Major: 1, Mode: ModeDuplex, Via: "net.tcp://[::1]:1/a?q", ContentType: "application/soap+msbinsession1+gzip"},
			[]byte{0x0C}},
		{"longest content type", Preamble{Major: 1, Mode: ModeDuplex, Via: "a:b", ContentType: strings.Repeat("x", MaxContentTypeLength)}, []byte{0x0C}},
		{"longest Via", Preamble{Major: 1, Mode: ModeDuplex, Via: "net.tcp://h/" + strings.Repeat("a", MaxViaLength-12)}, []byte{0x0C}},
		{"non-ASCII Via", Preamble{Major: 1, Mode: ModeDuplex, Via: "net.tcp://h/zürich"}, []byte{0x0C}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := AppendPreamble(nil, tc.p)
			want := decodeResult{Consumed: len(in) - len(tc.tail), Done: true, Preamble: tc.p}
			if tc.p.Mode == ModeSingletonUnsized {
				want.Preamble.Encoding = 0
			}
			assert.Equal(t, want, decodeChunks(in, len(in)))
			assert.Equal(t, want, decodeChunks(in, 1))
			assert.Equal(t, tc.tail, in[want.Consumed:])
		})
	}
}

func TestPreambleDecoderRefuses(t *testing.T) {
	withVia := func(via []byte, rest ...byte) []byte {
		return append(append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02}, via...), rest...)
	}
	viaRecord := func(s string) []byte { return append(AppendVarint(nil, len(s)), s...) }
	for _, tc := range []struct {
		name     string
		in       []byte
		reason   string
		fault    string
		consumed int
	}{
		{"not a Version record", []byte{0x01, 0x01, 0x00}, "bad_record", "", 1},
		{"major version 2", []byte{0x00, 0x02, 0x00}, "unsupported_version", FaultUnsupportedVersion, 2},
		{"major version 0", []byte{0x00, 0x00, 0x00}, "unsupported_version", FaultUnsupportedVersion, 2},
		{"not a Mode record", []byte{0x00, 0x01, 0x00, 0x02}, "bad_record", "", 4},
		{"mode 0", []byte{0x00, 0x01, 0x00, 0x01, 0x00}, "unsupported_mode", FaultUnsupportedMode, 5},
		{"mode 3 simplex", []byte{0x00, 0x01, 0x00, 0x01, 0x03}, "unsupported_mode", FaultUnsupportedMode, 5},
		{"mode 4 singleton sized", []byte{0x00, 0x01, 0x00, 0x01, 0x04}, "unsupported_mode", FaultUnsupportedMode, 5},
		{"mode 5", []byte{0x00, 0x01, 0x00, 0x01, 0x05}, "unsupported_mode", FaultUnsupportedMode, 5},
		{"not a Via record", []byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x03}, "bad_record", "", 6},
		{"Via of 2049 bytes", withVia([]byte{0x81, 0x10}), "via_too_long", FaultViaTooLong, 8},
		{"Via of MaxInt32 bytes", withVia([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x07}), "via_too_long", FaultViaTooLong, 11},
		{"Via length over int32", withVia([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x08}), "bad_varint", "", 11},
		{"Via length of 6 bytes", withVia([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), "bad_varint", "", 11},
		{"empty Via", withVia([]byte{0x00}), "bad_via", "", 7},
		{"relative Via", withVia(viaRecord("/Demo")), "bad_via", "", 12},
		{"Via not UTF-8", withVia(viaRecord("net.tcp://h/\xff")), "bad_via", "", 20},
		{"Via with control character", withVia(viaRecord("net.tcp://h/\n")), "bad_via", "", 20},
		{"Via with bad port", withVia(viaRecord("net.tcp://h:x/")), "bad_via", "", 21},
		{"Via with port over 65535", withVia(viaRecord("net.tcp://h:65536/")), "bad_via", "", 25},
		{"Via with bad host", withVia(viaRecord("net.tcp://a b/")), "bad_via", "", 21},
		{"no encoding record", withVia(viaRecord("a:b"), 0x0C), "bad_record", "", 11},
		{"known encoding 9", withVia(viaRecord("a:b"), 0x03, 0x09), "bad_encoding", FaultContentTypeInvalid, 12},
		{"content type too long", withVia(viaRecord("a:b"), 0x04, 0x81, 0x02), "bad_encoding", FaultContentTypeTooLong, 13},
		{"empty content type", withVia(viaRecord("a:b"), 0x04, 0x00), "bad_encoding", FaultContentTypeInvalid, 12},
		{"content type not UTF-8", withVia(viaRecord("a:b"), 0x04, 0x01, 0xC0), "bad_encoding", FaultContentTypeInvalid, 13},
		{"content type length bad", withVia(viaRecord("a:b"), 0x04, 0x80, 0x80, 0x80, 0x80, 0x10), "bad_varint", "", 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := decodeChunks(tc.in, len(tc.in))
			require.False(t, whole.Done)
			var e *DecodeError
			require.ErrorAs(t, whole.Err, &e)
			assert.Equal(t, tc.reason, e.Reason, e.Detail)
			assert.Equal(t, tc.fault, e.Fault)
			assert.Equal(t, tc.consumed, whole.Consumed)
			assert.Contains(t, e.Error(), tc.reason)
			assert.Equal(t, whole, decodeChunks(tc.in, 1), "byte at a time")
		})
	}
}

func TestPreambleDecoderNeedsMore(t *testing.T) {
	// Every proper prefix of the stock preamble, including one that ends
	// inside the Via length, asks for more.
	for i := range len(stockPreamble) - 1 {
		r := decodeChunks(stockPreamble[:i], 1)
		assert.Equal(t, decodeResult{Consumed: i, Preamble: r.Preamble}, r, "prefix of %d", i)
	}
	r := decodeChunks(append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02}, 0x80, 0x80), 1)
	assert.False(t, r.Done)
	assert.NoError(t, r.Err)
}

func TestPreambleDecoderErrorIsSticky(t *testing.T) {
	var d PreambleDecoder
	_, _, err := d.Feed([]byte{0x07})
	require.Error(t, err)
	n, done, err2 := d.Feed(stockPreamble)
	assert.Equal(t, 0, n)
	assert.False(t, done)
	assert.Same(t, err, err2)
}

// FuzzPreambleDecoder checks that any input gives the same result whole,
// byte at a time and in pieces of three, that the decoder never holds more
// than a Via, and that a decoded preamble encodes back to itself.
func FuzzPreambleDecoder(f *testing.F) {
	f.Add(stockPreamble)
	f.Add(AppendPreamble(nil, Preamble{Major: 1, Mode: ModeSingletonUnsized, Via: "net.tcp://h:1/x"}))
	f.Add(AppendPreamble(nil, Preamble{Major: 1, Mode: ModeDuplex, Via: "net.tcp://h/", ContentType: "text/xml"}))
	f.Add([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x81, 0x10})
	f.Add([]byte{0x00, 0x02, 0x00})
	f.Add([]byte{0x00, 0x01, 0x00, 0x01, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := decodeChunks(data, max(len(data), 1))
		require.Equal(t, whole, decodeChunks(data, 1))
		require.Equal(t, whole, decodeChunks(data, 3))

		var d PreambleDecoder
		for _, c := range data {
			if _, done, err := d.Feed([]byte{c}); done || err != nil {
				break
			}
			require.LessOrEqual(t, cap(d.buf), MaxViaLength)
		}

		if whole.Err != nil {
			var e *DecodeError
			require.ErrorAs(t, whole.Err, &e)
			require.NotEmpty(t, e.Reason)
		}
		if whole.Done {
			again := AppendPreamble(nil, whole.Preamble)
			r := decodeChunks(again, len(again))
			require.True(t, r.Done)
			require.Equal(t, whole.Preamble, r.Preamble)
		}
	})
}

func BenchmarkPreambleDecoderStock(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(stockPreamble)))
	for b.Loop() {
		var d PreambleDecoder
		if _, done, err := d.Feed(stockPreamble); !done || err != nil {
			b.Fatal(done, err)
		}
	}
}
