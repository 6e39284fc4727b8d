package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
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
}

type httpConn struct {
	net.Conn
	br *bufio.Reader
}

func newHTTPSession(o Options) *httpSession {
	u, _ := url.Parse(httpURL(o.Target)) // ParseTarget checked it
	s := &httpSession{
		addr:    o.Target.Addr,
		dialer:  net.Dialer{Timeout: o.ConnectTimeout},
		timeout: o.Timeout,
		req:     &http.Request{Method: o.Method, URL: u},
		idle:    make(chan *httpConn, o.MaxInFlight),
	}
	if o.Target.TLS {
		// Load targets use self-signed certificates.
		s.tls = &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portshare-load\r\n", o.Method, u.RequestURI(), u.Host)
	if bodyMethod(o.Method) {
		fmt.Fprintf(&w, "Content-Length: %d\r\n\r\n", o.MessageSize)
		w.Write(bytes.Repeat([]byte{'x'}, o.MessageSize))
	} else {
		w.WriteString("\r\n")
	}
	s.wire = w.Bytes()
	return s
}

func bodyMethod(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

// httpURL is the target as an http(s) URL (the scheme's case normalised).
func httpURL(t Target) string {
	scheme, rest, _ := strings.Cut(t.URI, "://")
	return strings.ToLower(scheme) + "://" + rest
}

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
	select {
	case c := <-s.idle:
		outcome, err, fresh := s.exchange(ctx, c, ph, start)
		if !fresh {
			return outcome, err
		}
		// The server closed the idle connection before it saw the request
		// (a keep-alive timeout): retry on a new one, as net/http does.
	default:
	}
	c, err := s.connect(ctx, ph)
	if err != nil {
		return Classify(err), err
	}
	outcome, err, _ := s.exchange(ctx, c, ph, start)
	return outcome, err
}

// connect opens a connection (and its TLS session, timed as part of the
// connect phase).
func (s *httpSession) connect(ctx context.Context, ph *Phases) (*httpConn, error) {
	c, err := dial(ctx, &s.dialer, s.addr, ph)
	if err != nil {
		return nil, err
	}
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
	return &httpConn{Conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// exchange sends the request on c and reads the response. It returns the
// connection to the pool if it can be reused, and closes it otherwise.
// retry reports that c was found closed before any response byte, so the
// request can be sent again on a new connection.
func (s *httpSession) exchange(ctx context.Context, c *httpConn, ph *Phases, start time.Time) (outcome string, err error, retry bool) {
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	defer interruptOnDone(ctx, c)()
	c.SetDeadline(start.Add(s.timeout))
	if _, err := c.Write(s.wire); err != nil {
		return classifyHTTP(err), err, reusedAndClosed(err)
	}
	sent := time.Now()
	if _, err := c.br.Peek(1); err != nil {
		return classifyHTTP(err), err, reusedAndClosed(err)
	}
	ph.Handshake = time.Since(sent)
	resp, err := http.ReadResponse(c.br, s.req)
	if err != nil {
		return classifyHTTP(err), err, false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return classifyHTTP(err), err, false
	}
	if !resp.Close && ctx.Err() == nil {
		select {
		case s.idle <- c:
			keep = true
		default:
		}
	}
	return HTTPOutcome(resp.StatusCode), nil, false
}

// reusedAndClosed reports an error that means the server had closed the
// connection before the request reached it.
func reusedAndClosed(err error) bool {
	return errors.Is(err, io.EOF) || Classify(err) == Reset
}

// classifyHTTP classifies an exchange error: what the errno does not
// explain is a reply that is not HTTP.
func classifyHTTP(err error) string {
	if c := Classify(err); c != Error {
		return c
	}
	return ProtocolError
}
