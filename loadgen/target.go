package loadgen

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Protocols a target's scheme selects.
const (
	NetTCP = "net.tcp" // MC-NMF duplex sessions
	HTTP   = "http"    // HTTP/1.1 requests (https:// too, with TLS)
	TCP    = "tcp"     // a connection storm: connect, optionally send, hold, close
)

// Target is where load goes.
type Target struct {
	URI      string // as given
	URL      string // as sent (the Via, or the request URL): the scheme in lower case
	Protocol string // NetTCP, HTTP or TCP
	Addr     string // host:port to connect to
	TLS      bool   // https://
}

// ParseTarget checks a target URI: net.tcp://host:port/path,
// http[s]://host[:port]/path or tcp://host:port.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: %v", s, err)
	}
	t := Target{URI: s, URL: u.String()} // url.Parse lowers the scheme
	port := u.Port()
	switch strings.ToLower(u.Scheme) {
	case "net.tcp":
		t.Protocol = NetTCP
		if port == "" {
			port = "808" // WCF's default net.tcp port
		}
	case "http":
		t.Protocol = HTTP
		if port == "" {
			port = "80"
		}
	case "https":
		t.Protocol, t.TLS = HTTP, true
		if port == "" {
			port = "443"
		}
	case "tcp":
		t.Protocol = TCP
		if port == "" {
			return Target{}, fmt.Errorf("target %q: a tcp:// target needs a port", s)
		}
		if u.Path != "" && u.Path != "/" {
			return Target{}, fmt.Errorf("target %q: a tcp:// target has no path", s)
		}
	default:
		return Target{}, fmt.Errorf("target %q: the scheme must be net.tcp://, http://, https:// or tcp://", s)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("target %q has no host", s)
	}
	t.Addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// host is the target's host[:port] as its URL writes it: an HTTP
// request's Host header.
func (t Target) host() string {
	u, _ := url.Parse(t.URL) // ParseTarget made it
	return u.Host
}
