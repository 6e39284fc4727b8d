package refworker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/portshare/portshare/sharer/nmf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const stockVia = "net.tcp://localhost:8898/Demo"

// stockPreamble is what a stock WCF NetTcpBinding client sends first.
var stockPreamble = append(append([]byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x1D}, stockVia...), 0x03, 0x08, 0x0C)

// testWait bounds every wait in these tests.
const testWait = 5 * time.Second

// startEcho runs ServeEcho on one end of a net.Pipe and returns the other
// end and the channel ServeEcho's result arrives on.
func startEcho(t *testing.T, maxMessage int, idle time.Duration) (net.Conn, <-chan error) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.SetDeadline(time.Now().Add(testWait)))
	done := make(chan error, 1)
	go func() { done <- ServeEcho(server, "w1", maxMessage, idle) }()
	return client, done
}

// result waits for ServeEcho's result.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(testWait):
		t.Fatal("ServeEcho did not return")
		return nil
	}
}

// write writes b from a goroutine, since a net.Pipe write waits for the
// reader, and returns a channel that is closed when it is done.
func write(c net.Conn, b []byte) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Write(b)
	}()
	return done
}

func requireRecord(t *testing.T, r *nmf.Reader, typ byte, payload string) {
	t.Helper()
	rec, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, typ, rec.Type)
	assert.Equal(t, payload, string(rec.Payload))
}

func TestServeEchoSession(t *testing.T) {
	client, done := startEcho(t, 64, time.Second)
	r := nmf.NewReader(client, 1024)

	_, err := client.Write(stockPreamble)
	require.NoError(t, err)
	requireRecord(t, r, nmf.RecPreambleAck, "")

	for _, msg := range []string{"hello", "", "x"} {
		_, err := client.Write(nmf.AppendSizedEnvelope(nil, []byte(msg)))
		require.NoError(t, err)
		requireRecord(t, r, nmf.RecSizedEnvelope, "w1:"+msg)
	}

	_, err = client.Write(nmf.AppendEnd(nil))
	require.NoError(t, err)
	requireRecord(t, r, nmf.RecEnd, "")
	_, err = r.Next()
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, result(t, done))
}

func TestServeEchoWireBytes(t *testing.T) {
	// Everything at once, checked byte for byte.
	client, done := startEcho(t, 64, time.Second)
	in := append(bytes.Clone(stockPreamble), 0x06, 0x02, 'h', 'i', 0x07)
	wrote := write(client, in)
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x0B, 0x06, 0x05, 'w', '1', ':', 'h', 'i', 0x07}, got)
	require.NoError(t, result(t, done))
	<-wrote
}

func TestServeEchoFaults(t *testing.T) {
	withPreamble := func(rest ...byte) []byte { return append(bytes.Clone(stockPreamble), rest...) }
	for _, tc := range []struct {
		name  string
		in    []byte
		fault string
	}{
		{"mode 3", []byte{0x00, 0x01, 0x00, 0x01, 0x03}, nmf.FaultUnsupportedMode},
		{"singleton", []byte{0x00, 0x01, 0x00, 0x01, 0x01}, nmf.FaultUnsupportedMode},
		{"version 2", []byte{0x00, 0x02, 0x00, 0x01, 0x02}, nmf.FaultUnsupportedVersion},
		{"Via too long", []byte{0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x81, 0x10}, nmf.FaultViaTooLong},
		{"upgrade", append(stockPreamble[:len(stockPreamble)-1:len(stockPreamble)-1], 0x09, 0x01, 'x'), nmf.FaultUpgradeInvalid},
		{"envelope too large", withPreamble(0x06, 65), nmf.FaultMaxMessageSizeExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, done := startEcho(t, 64, time.Second)
			wrote := write(client, tc.in)
			got, err := io.ReadAll(client)
			require.NoError(t, err)
			got = bytes.TrimPrefix(got, []byte{0x0B}) // after a complete preamble
			assert.Equal(t, nmf.AppendFault(nil, tc.fault), got)

			var de *nmf.DecodeError
			require.ErrorAs(t, result(t, done), &de)
			assert.Equal(t, tc.fault, de.Fault)
			client.Close()
			<-wrote
		})
	}
}

func TestServeEchoClosesWithoutFault(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"HTTP", []byte("GET / HTTP/1.1\r\n")},
		{"no PreambleEnd", append(stockPreamble[:len(stockPreamble)-1:len(stockPreamble)-1], 0x06, 0x00)},
		{"preamble again", append(bytes.Clone(stockPreamble), stockPreamble...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, done := startEcho(t, 64, time.Second)
			wrote := write(client, tc.in)
			got, err := io.ReadAll(client)
			require.NoError(t, err)
			assert.NotContains(t, got, byte(nmf.RecFault))
			var de *nmf.DecodeError
			require.ErrorAs(t, result(t, done), &de)
			assert.Equal(t, "bad_record", de.Reason)
			client.Close()
			<-wrote
		})
	}
}

func TestServeEchoClientGoesAway(t *testing.T) {
	t.Run("inside the preamble", func(t *testing.T) {
		client, done := startEcho(t, 64, time.Second)
		_, err := client.Write(stockPreamble[:10])
		require.NoError(t, err)
		client.Close()
		require.ErrorIs(t, result(t, done), io.ErrUnexpectedEOF)
	})
	t.Run("without End", func(t *testing.T) {
		client, done := startEcho(t, 64, time.Second)
		_, err := client.Write(stockPreamble)
		require.NoError(t, err)
		ack := make([]byte, 1)
		_, err = io.ReadFull(client, ack)
		require.NoError(t, err)
		require.Equal(t, []byte{nmf.RecPreambleAck}, ack)
		client.Close()
		require.ErrorIs(t, result(t, done), io.EOF)
	})
}

func TestServeEchoIdle(t *testing.T) {
	client, done := startEcho(t, 64, 50*time.Millisecond)
	_, err := client.Write(stockPreamble[:5])
	require.NoError(t, err)
	start := time.Now()
	err = result(t, done)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestServeEchoTCPFaultIsDelivered(t *testing.T) {
	// Over TCP the worker half-closes and drains, so the client reads the
	// whole fault and then EOF, not a reset, even though it sent more than
	// the worker read.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- ServeEcho(c, "w1", 64, time.Second)
	}()

	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	require.NoError(t, client.SetDeadline(time.Now().Add(testWait)))
	in := append([]byte{0x00, 0x01, 0x00, 0x01, 0x03}, bytes.Repeat([]byte{0x55}, 32<<10)...)
	_, err = client.Write(in)
	require.NoError(t, err)
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, nmf.AppendFault(nil, nmf.FaultUnsupportedMode), got)
	client.Close()

	var de *nmf.DecodeError
	require.True(t, errors.As(result(t, done), &de))
	assert.Equal(t, "unsupported_mode", de.Reason)
}
