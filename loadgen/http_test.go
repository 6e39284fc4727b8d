package loadgen

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/portshare/portshare/sharer/testutil"
)

// The open model's HTTP engine keeps its own connections and reads
// responses with net/http's parser; these are the cases a pool must get
// right.
func TestOpenHTTPConnectionHandling(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		case "/post":
			b, _ := io.ReadAll(r.Body)
			if r.Method != "POST" || len(b) != 100 {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/head":
			w.Header().Set("Content-Length", "1000")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.IdleTimeout = 30 * time.Millisecond // closes idle connections under the pool
	srv.Start()
	t.Cleanup(srv.Close)
	load := func(path, method string, size int, per float64) *Result {
		conns.Store(0)
		return run(t, Options{Target: target(t, srv.URL+path), Pacer: &Constant{Per: per}, Count: 20, Method: method, MessageSize: size})
	}

	r := load("/chunked", "", 0, 500)
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
	assert.Less(t, conns.Load(), int64(20), "chunked responses keep the connection")

	r = load("/close", "", 0, 500)
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
	assert.Equal(t, int64(20), conns.Load(), "Connection: close is honoured")

	r = load("/post", "POST", 100, 500)
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)

	r = load("/head", "HEAD", 0, 500)
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes, "a HEAD response has no body whatever its Content-Length")

	// At 20/s every connection has been idle longer than the server keeps
	// it: each request finds its pooled connection closed and retries on a
	// new one instead of failing.
	r = load("/", "", 0, 20)
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
}

func TestOpenHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	r := run(t, Options{Target: target(t, srv.URL+"/"), Pacer: &Constant{Per: 200}, Count: 20})
	require.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
	assert.NotZero(t, r.Phases[PhaseConnect].Count, "the TLS handshake is part of the connect phase")
	closed := run(t, Options{Target: target(t, srv.URL+"/"), Concurrency: 2, Count: 10})
	assert.Equal(t, map[string]int64{OK: 10}, closed.Outcomes)
}

// A server that takes a request and closes without answering has failed
// that request: it is counted (eof), never sent again.
func TestOpenHTTPNeverResendsARequestTheServerTook(t *testing.T) {
	var received atomic.Int64
	addr := testutil.Serve(t, func(c net.Conn, _ <-chan struct{}) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			received.Add(1)
			if i == 1 {
				return // the second request on a connection dies with it
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	r := run(t, Options{Target: target(t, "http://"+addr+"/"), Pacer: &Constant{Per: 100}, Count: 20, Method: "POST", MessageSize: 10})
	assert.Equal(t, int64(20), received.Load(), "each session sent its request once")
	assert.Equal(t, int64(20), r.Outcomes[OK]+r.Outcomes[EOF], "%v", r.Outcomes)
	assert.Positive(t, r.Outcomes[EOF])
}

// With NewConnections every session connects anew and says so, in the
// open model and in the closed one (hey): against a shared port, each
// session is a hand-off.
func TestHTTPNewConnections(t *testing.T) {
	var conns atomic.Int64
	var closing atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Close {
			closing.Add(1)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	r := run(t, Options{Target: target(t, srv.URL+"/"), Pacer: &Constant{Per: 500}, Count: 20, NewConnections: true})
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
	assert.Equal(t, int64(20), conns.Load(), "a connection per session")
	assert.Equal(t, int64(20), closing.Load(), "each request asks for Connection: close")

	conns.Store(0)
	r = run(t, Options{Target: target(t, srv.URL+"/"), Concurrency: 2, Count: 20, NewConnections: true})
	assert.Equal(t, map[string]int64{OK: 20}, r.Outcomes)
	assert.Equal(t, int64(20), conns.Load(), "hey without keep-alive")

	_, err := Run(t.Context(), Options{Target: target(t, "net.tcp://127.0.0.1:1/a/"), Pacer: &Constant{Per: 1}, Count: 1, NewConnections: true})
	var oe OptionsError
	require.ErrorAs(t, err, &oe)
	assert.Contains(t, err.Error(), "for http targets")
}
