package sniff

import (
	"strconv"

	"github.com/portshare/portshare/sharer/nmf"
)

// netTCPParser reads the .NET Message Framing preamble up to the point where
// SMSvcHost routes it: after the Via for Singleton, after the encoding
// record for Duplex. nmf.PreambleDecoder does the work and bounds the memory
// (one Via of at most nmf.MaxViaLength bytes); no Limits apply.
type netTCPParser struct {
	d nmf.PreambleDecoder
}

func newNetTCP(Limits) parser { return &netTCPParser{} }

// feed decodes the next bytes. Once the preamble is routable it returns the
// Via's host, port (0 if absent) and path (escaped, without query or
// fragment, "/" if empty); a refused preamble gives an *Error carrying the
// decoder's reason and the fault WCF would send for it.
func (p *netTCPParser) feed(b []byte) (Key, bool, error) {
	_, done, err := p.d.Feed(b)
	if err != nil {
		de := err.(*nmf.DecodeError) // Feed's errors are all *DecodeError
		return Key{}, false, &Error{Protocol: NetTCP, Reason: de.Reason, Fault: de.Fault, Detail: de.Detail}
	}
	if !done {
		return Key{}, false, nil
	}
	u := p.d.ViaURL()
	key := Key{Protocol: NetTCP, Host: u.Hostname(), Path: u.EscapedPath(), Via: p.d.Preamble().Via}
	if key.Path == "" {
		key.Path = "/" // an opaque or authority-only Via
	}
	if port := u.Port(); port != "" {
		// The decoder has checked it is decimal and at most 65535.
		key.Port, _ = strconv.Atoi(port)
	}
	return key, true, nil
}
