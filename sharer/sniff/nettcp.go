package sniff

import (
	"strconv"
	"strings"

	"github.com/portshare/portshare/sharer/nmf"

	"github.com/portshare/portshare/sharer/route"
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
// Via's host, port (0 if absent) and path; a refused preamble gives an
// *Error carrying the decoder's reason and the fault WCF would send for it.
func (p *netTCPParser) feed(b []byte) (Key, bool, error) {
	_, done, err := p.d.Feed(b)
	if err != nil {
		de := err.(*nmf.DecodeError) // Feed's errors are all *DecodeError
		return Key{}, false, &Error{Protocol: NetTCP, Reason: de.Reason, Fault: de.Fault, Detail: de.Detail}
	}
	if !done {
		return Key{}, false, nil
	}
	u, via := p.d.ViaURL(), p.d.Preamble().Via
	path, ok := route.CanonicalPath(viaPath(via))
	if !ok {
		return Key{}, false, &Error{Protocol: NetTCP, Reason: "bad_via", Detail: "bad percent-escape in the Via path"}
	}
	key := Key{Protocol: NetTCP, Host: u.Hostname(), Path: path, Via: via}
	if port := u.Port(); port != "" {
		// The decoder has checked it is decimal and at most 65535.
		key.Port, _ = strconv.Atoi(port)
	}
	return key, true, nil
}

// viaPath returns the path of an absolute URI as written. The query and
// fragment are dropped; an empty or opaque path ("urn:x") gives "/".
func viaPath(via string) string {
	_, rest, _ := strings.Cut(via, ":")
	if r, ok := strings.CutPrefix(rest, "//"); ok {
		// An authority holds none of these.
		i := strings.IndexAny(r, "/?#")
		if i < 0 {
			return "/"
		}
		rest = r[i:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if !strings.HasPrefix(rest, "/") {
		return "/"
	}
	return rest
}
