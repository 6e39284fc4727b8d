package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sys/unix"
)

// httpSession is one HTTP/1.1 request on a keep-alive connection: the open
// model's HTTP engine. (Closed-model HTTP runs on hey's requester.)
//
// It keeps its own pool of connections and writes a request serialised
// once, and reads responses with net/http's own parser
// (http.ReadResponse). net/http's Transport hands every request to two
// goroutines per connection and back; at saturation that held the open
// model to a third of wrk's requests/s on the same target.
type httpSession struct {
	addr    string
	tls     *tls.Config // https
	dialer  net.Dialer
	timeout time.Duration
	req     *http.Request // what ReadResponse needs to know (the method)
	wire    []byte        // the request as sent
	idle    chan *httpConn
	fresh   bool // a connection per session: none is kept
}

type httpConn struct {
	net.Conn              // tcp, or TLS over it
	tcp      *net.TCPConn // for the liveness probe
	br       *bufio.Reader
}

func newHTTPSession(o Options) *httpSession {
	u, _ := url.Parse(o.Target.URL) // ParseTarget made it
	s := &httpSession{
		addr:    o.Target.Addr,
		dialer:  net.Dialer{Timeout: o.ConnectTimeout},
		timeout: o.Timeout,
		req:     &http.Request{Method: o.Method, URL: u},
		idle:    make(chan *httpConn, o.MaxInFlight),
	}
	s.fresh = o.NewConnections
	if o.Target.TLS {
		// Load targets use self-signed certificates.
		s.tls = &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}
	}
	s.wire = httpRequest(o, u.RequestURI())
	return s
}

// httpRequest is the request a session of o sends, for the request target
// (origin form) given: the target's own, or another (client faults).
func httpRequest(o Options, requestURI string) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portshare-load\r\n", o.Method, requestURI, o.Target.host())
	if o.NewConnections {
		w.WriteString("Connection: close\r\n")
	}
	if bodyMethod(o.Method) {
		fmt.Fprintf(&w, "Content-Length: %d\r\n\r\n", o.MessageSize)
		w.Write(bytes.Repeat([]byte{'x'}, o.MessageSize))
	} else {
		w.WriteString("\r\n")
	}
	return w.Bytes()
}

func bodyMethod(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

// close closes the idle connections.
func (s *httpSession) close() {
	for {
		select {
		case c := <-s.idle:
			c.Close()
		default:
			return
		}
	}
}

func (s *httpSession) Run(ctx context.Context, ph *Phases) (string, error) {
	start := time.Now()
	c := s.pooled()
	if c == nil {
		var err error
		if c, err = s.connect(ctx, ph); err != nil {
			return Classify(err), err
		}
	}
	return s.exchange(ctx, c, ph, start)
}

// pooled returns an idle connection the server has not closed, or nil.
// A server closes idle connections after its keep-alive timeout; sending
// on one would fail a request the server never saw. Each is probed with a
// non-blocking peek at its socket: nothing to read means it is still open.
// (A server that closes it between the probe and the request is a failure
// we count, as it would be for any client.)
func (s *httpSession) pooled() *httpConn {
	for {
		select {
		case c := <-s.idle:
			if c.open() {
				return c
			}
			c.Close()
		default:
			return nil
		}
	}
}

// open reports whether the server has neither closed c nor sent anything
// on it (bytes nobody asked for, or TLS's close_notify, mean it is done).
func (c *httpConn) open() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = err == unix.EAGAIN
		return true // do not wait for the socket to become readable
	})
	return open
}

// connect opens a connection (and its TLS session, timed as part of the
// connect phase).
func (s *httpSession) connect(ctx context.Context, ph *Phases) (*httpConn, error) {
	c, err := dial(ctx, &s.dialer, s.addr, ph)
	if err != nil {
		return nil, err
	}
	tcp := c.(*net.TCPConn)
	if s.tls != nil {
		t0 := time.Now()
		tc := tls.Client(c, s.tls)
		hctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, err
		}
		ph.Connect += time.Since(t0)
		c = tc
	}
	return &httpConn{Conn: c, tcp: tcp, br: bufio.NewReaderSize(c, 4096)}, nil
}

// exchange sends the request on c and reads the response. It returns the
// connection to the pool if it can be reused, and closes it otherwise.
func (s *httpSession) exchange(ctx context.Context, c *httpConn, ph *Phases, start time.Time) (outcome string, err error) {
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	defer interruptOnDone(ctx, c)()
	c.SetDeadline(start.Add(s.timeout))
	if _, err := c.Write(s.wire); err != nil {
		return classifyHTTP(err), err
	}
	sent := time.Now()
	if _, err := c.br.Peek(1); err != nil {
		return classifyHTTP(err), err
	}
	ph.Handshake = time.Since(sent)
	resp, err := readWholeResponse(c.br, s.req)
	if err != nil {
		return classifyHTTP(err), err
	}
	if !resp.Close && !s.fresh && ctx.Err() == nil {
		select {
		case s.idle <- c:
			keep = true
		default:
		}
	}
	return HTTPOutcome(resp.StatusCode), nil
}

// classifyHTTP classifies an exchange error: what the errno does not
// explain is a reply that is not HTTP.
func classifyHTTP(err error) string {
	if c := Classify(err); c != Error {
		return c
	}
	return ProtocolError
}

// readWholeResponse reads one response to req from br, its body read and
// discarded, so the connection is ready for the next.
func readWholeResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}
