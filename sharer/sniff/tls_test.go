package sniff

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// captureClientHello runs a crypto/tls client handshake over a net.Pipe and
// returns the first record the client writes, which holds its ClientHello.
// The handshake then fails for want of a server.
func captureClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- tls.Client(client, cfg).Handshake() }()
	defer func() {
		server.Close()
		client.Close()
		<-errc
	}()
	require.NoError(t, server.SetDeadline(time.Now().Add(10*time.Second)))
	rec := make([]byte, 5)
	_, err := io.ReadFull(server, rec)
	require.NoError(t, err)
	rec = append(rec, make([]byte, binary.BigEndian.Uint16(rec[3:]))...)
	_, err = io.ReadFull(server, rec[5:])
	require.NoError(t, err)
	require.Equal(t, byte(tlsHandshakeHello), rec[5], "first handshake message")
	return rec
}

// resplit rewrites one handshake record into records of at most n
// fragment bytes each.
func resplit(rec []byte, n int) []byte {
	var out []byte
	for p := rec[5:]; len(p) > 0; {
		c := min(n, len(p))
		out = append(out, tlsRecordHandshake, 3, 1, byte(c>>8), byte(c))
		out = append(out, p[:c]...)
		p = p[c:]
	}
	return out
}

// record wraps a handshake fragment in one TLS 1.2 record.
func record(typ byte, fragment []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(fragment) >> 8), byte(len(fragment))}, fragment...)
}

// handshake wraps a body in a handshake message header.
func handshake(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func u16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// helloBody builds a minimal ClientHello body; exts nil means no
// extensions block at all.
func helloBody(exts []byte) []byte {
	b := cat([]byte{3, 3}, make([]byte, 32), []byte{0}, u16(2), []byte{0x13, 0x01}, []byte{1, 0})
	if exts != nil {
		b = cat(b, u16(len(exts)), exts)
	}
	return b
}

func ext(typ int, data []byte) []byte { return cat(u16(typ), u16(len(data)), data) }

// sniExt builds a server_name extension from (name_type, name) entries.
func sniExt(entries ...[]byte) []byte {
	list := cat(entries...)
	return ext(tlsExtServerName, cat(u16(len(list)), list))
}

func hostName(name string) []byte {
	return cat([]byte{tlsServerNameHostName}, u16(len(name)), []byte(name))
}

func helloRecord(exts []byte) []byte {
	return record(tlsRecordHandshake, handshake(tlsHandshakeHello, helloBody(exts)))
}

func TestTLSRealClientHello(t *testing.T) {
	rec := captureClientHello(t, &tls.Config{ServerName: "a.example"})
	want := Key{Protocol: TLS, Host: "a.example", Path: "/"}
	for name, data := range map[string][]byte{
		"one record":           rec,
		"50-byte records":      resplit(rec, 50),
		"1-byte records":       resplit(rec, 1),
		"followed by more":     cat(rec, record(20, []byte{1}), record(23, []byte("early"))),
		"50-byte records, CCS": cat(resplit(rec, 50), record(20, []byte{1})),
	} {
		for _, n := range []int{len(data), 1, 3, 7, 50, 512} {
			r := sniffChunks(Limits{}, data, n)
			require.NoError(t, r.Err, "%s in pieces of %d", name, n)
			require.True(t, r.Done, "%s in pieces of %d", name, n)
			assert.Equal(t, want, r.Key, "%s in pieces of %d", name, n)
		}
	}
}

func TestTLSNoSNI(t *testing.T) {
	// Without a ServerName (or with an IP as one) crypto/tls sends no
	// server_name extension.
	for _, cfg := range []*tls.Config{{InsecureSkipVerify: true}, {ServerName: "192.0.2.1"}} {
		rec := captureClientHello(t, cfg)
		for _, r := range []result{sniffWhole(Limits{}, rec), sniffBytewise(Limits{}, resplit(rec, 50))} {
			require.NoError(t, r.Err)
			require.True(t, r.Done)
			assert.Equal(t, Key{Protocol: TLS, Path: "/"}, r.Key)
		}
	}
}

func TestTLSHelloLimit(t *testing.T) {
	rec := captureClientHello(t, &tls.Config{ServerName: "a.example"})
	msgLen := len(rec) - 5 - 4
	r := sniffWhole(Limits{MaxTLSHello: msgLen}, rec)
	require.NoError(t, r.Err)
	assert.Equal(t, "a.example", r.Key.Host)

	for _, data := range [][]byte{rec, resplit(rec, 50)} {
		requireError(t, sniffWhole(Limits{MaxTLSHello: msgLen - 1}, data), TLS, "hello_too_large", 0)
		requireError(t, sniffBytewise(Limits{MaxTLSHello: 100}, data), TLS, "hello_too_large", 0)
	}
	// Refused from the message header, before the body arrives.
	r = sniffWhole(Limits{}, record(tlsRecordHandshake, []byte{tlsHandshakeHello, 0, 0x40, 0x01}))
	requireError(t, r, TLS, "hello_too_large", 0)
}

func TestTLSCraftedHello(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		host string
	}{
		{"no extensions", helloRecord(nil), ""},
		{"empty extensions", helloRecord([]byte{}), ""},
		{"other extensions", helloRecord(cat(ext(10, []byte{0, 2, 0, 29}), ext(0xff01, []byte{0}))), ""},
		{"SNI", helloRecord(cat(ext(10, []byte{0, 2, 0, 29}), sniExt(hostName("b.Example")))), "b.Example"},
		{"SNI with another name type", helloRecord(sniExt(cat([]byte{7}, u16(1), []byte("x")), hostName("b.example"))), "b.example"},
		{"SNI underscore", helloRecord(sniExt(hostName("_svc.b-1.example"))), "_svc.b-1.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sniffWhole(Limits{}, tc.data)
			require.NoError(t, r.Err)
			require.True(t, r.Done)
			assert.Equal(t, Key{Protocol: TLS, Host: tc.host, Path: "/"}, r.Key)
			assert.Equal(t, r, sniffBytewise(Limits{}, tc.data))
		})
	}
}

func TestTLSRefused(t *testing.T) {
	sni := sniExt(hostName("a.example"))
	body := helloBody(sni)
	hello := func(b []byte) []byte { return record(tlsRecordHandshake, handshake(tlsHandshakeHello, b)) }
	withByte := func(i int, v byte) []byte { b := bytes.Clone(body); b[i] = v; return hello(b) }
	for _, tc := range []struct {
		name   string
		data   []byte
		reason string
	}{
		{"alert between records", cat(resplit(hello(body), 20)[:25], record(21, []byte{2, 40})), "bad_tls"},
		{"change_cipher_spec before hello", cat(record(tlsRecordHandshake, []byte{1}), record(20, []byte{1})), "bad_tls"},
		{"ServerHello", record(tlsRecordHandshake, handshake(2, body)), "not_client_hello"},
		{"Certificate", record(tlsRecordHandshake, []byte{11, 0, 0, 3}), "not_client_hello"},
		{"record version 2", []byte{tlsRecordHandshake, 2, 0, 0, 4, 1, 0, 0, 0}, "bad_tls"},
		{"empty record", []byte{tlsRecordHandshake, 3, 1, 0, 0}, "bad_tls"},
		{"record too long", []byte{tlsRecordHandshake, 3, 1, 0x48, 0x01}, "bad_tls"},
		{"empty hello", hello(nil), "bad_tls"},
		{"truncated hello", hello(body[:20]), "bad_tls"},
		{"hello version 2.0", withByte(0, 2), "bad_tls"},
		{"session id of 33", withByte(34, 33), "bad_tls"},
		{"odd cipher suites", hello(cat(body[:35], u16(3), []byte{0x13, 1, 0}, body[39:])), "bad_tls"},
		{"no cipher suites", hello(cat(body[:35], u16(0), body[39:])), "bad_tls"},
		{"no compression", hello(cat(body[:39], []byte{0}, body[41:])), "bad_tls"},
		{"extensions block too long", hello(cat(body[:41], u16(len(sni)+1), sni)), "bad_tls"},
		{"byte after extensions", hello(cat(body, []byte{0})), "bad_tls"},
		{"one byte of extensions", hello(cat(body[:41], []byte{0})), "bad_tls"},
		{"extension too long", hello(helloBody(cat(u16(10), u16(5), []byte{1}))), "bad_tls"},
		{"duplicate server_name", hello(helloBody(cat(sni, sni))), "bad_tls"},
		{"two host_names", hello(helloBody(sniExt(hostName("a.example"), hostName("b.example")))), "bad_tls"},
		{"empty server_name list", hello(helloBody(ext(tlsExtServerName, u16(0)))), "bad_tls"},
		{"empty server_name extension", hello(helloBody(ext(tlsExtServerName, nil))), "bad_tls"},
		{"server_name list too long", hello(helloBody(ext(tlsExtServerName, cat(u16(20), hostName("a"))))), "bad_tls"},
		{"byte after server_name list", hello(helloBody(ext(tlsExtServerName, cat(u16(4), hostName("a"), []byte{0})))), "bad_tls"},
		{"truncated host_name", hello(helloBody(ext(tlsExtServerName, cat(u16(3), []byte{0}, u16(5))))), "bad_tls"},
		{"empty host_name", hello(helloBody(sniExt(hostName("")))), "bad_tls"},
		{"trailing dot", hello(helloBody(sniExt(hostName("a.example.")))), "bad_tls"},
		{"slash in host_name", hello(helloBody(sniExt(hostName("a/b")))), "bad_tls"},
		{"NUL in host_name", hello(helloBody(sniExt(hostName("a\x00b")))), "bad_tls"},
		{"non-ASCII host_name", hello(helloBody(sniExt(hostName("bücher.example")))), "bad_tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sniffWhole(Limits{}, tc.data)
			requireError(t, r, TLS, tc.reason, 0)
			assert.Equal(t, r, sniffBytewise(Limits{}, tc.data))
		})
	}
}

func TestTLSParserRefusesAlertFirst(t *testing.T) {
	// The dispatch sends only 0x16 here, but the parser holds on its own.
	_, done, err := newTLS(DefaultLimits).feed(record(21, []byte{2, 40}))
	assert.False(t, done)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, Error{Protocol: TLS, Reason: "bad_tls", Detail: e.Detail}, *e)
}

func TestTLSIncomplete(t *testing.T) {
	rec := helloRecord(sniExt(hostName("a.example")))
	longest := []byte{tlsRecordHandshake, 3, 1, byte(maxTLSRecord >> 8), byte(maxTLSRecord & 0xff)}
	for _, data := range [][]byte{rec[:1], rec[:5], rec[:8], rec[:len(rec)-1], resplit(rec, 10)[:15], longest} {
		assert.Equal(t, result{}, sniffWhole(Limits{}, data), "% x", data)
	}
}

// FuzzSniffTLS checks that no input panics, that whole and byte-at-a-time
// feeding agree, and that results keep the package's contract.
func FuzzSniffTLS(f *testing.F) {
	// Only an X25519 key share: the default hybrid ML-KEM one makes a
	// 1.5 KB hello, and the fuzzer spends its time minimizing its variants
	// (quadratic in the size) instead of exploring.
	rec := captureClientHello(f, &tls.Config{ServerName: "a.example", CurvePreferences: []tls.CurveID{tls.X25519}})
	f.Add(rec)
	f.Add(rec[9:]) // its body alone
	f.Add(resplit(rec, 50))
	f.Add(helloRecord(nil))
	f.Add(helloRecord(sniExt(hostName("b.example"), cat([]byte{1}, u16(0)))))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] != tlsRecordHandshake {
			// Not a record: take it as a ClientHello body, so that
			// mutations reach the hello parser past the length fields.
			if len(data) > 1<<14 {
				return
			}
			data = record(tlsRecordHandshake, handshake(tlsHandshakeHello, data))
		}
		whole := sniffWhole(Limits{}, data)
		require.Equal(t, whole, sniffBytewise(Limits{}, data))
		if whole.Done {
			assert.Equal(t, Key{Protocol: TLS, Host: whole.Key.Host, Path: "/"}, whole.Key)
			assert.True(t, allIn(whole.Key.Host, &sniChars))
		}
		if whole.Err != nil {
			var e *Error
			require.ErrorAs(t, whole.Err, &e)
			assert.Equal(t, Error{Protocol: TLS, Reason: e.Reason, Detail: e.Detail}, *e)
		}
	})
}

func BenchmarkSniffTLS(b *testing.B) {
	rec := captureClientHello(b, &tls.Config{ServerName: "a.example"})
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if r := sniffWhole(Limits{}, rec); !r.Done {
			b.Fatal(r.Err)
		}
	}
}
