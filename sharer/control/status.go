package control

import (
	"fmt"
	"time"
)

// FetchStatus asks the daemon at socket for its status document (the JSON
// that `portshare status --json` prints) and returns it as sent. It gives
// up after timeout, whether the daemon does not answer the dial or stops
// in the middle of its reply (a paused daemon, say).
func FetchStatus(socket string, timeout time.Duration) ([]byte, error) {
	cc, err := Dial(socket, timeout)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(timeout))
	if err := cc.Send(TypeStatus, Status{}, nil, -1, 0); err != nil {
		return nil, err
	}
	var doc []byte
	for {
		m, err := cc.Recv()
		if err != nil {
			return nil, fmt.Errorf("reading status from %s: %w", socket, err)
		}
		m.CloseFD()
		if m.Type != TypeStatusReply {
			return nil, fmt.Errorf("reading status from %s: unexpected %s", socket, m.Type)
		}
		var part StatusReply
		if err := m.Unmarshal(&part); err != nil {
			return nil, err
		}
		doc = append(doc, m.Payload...)
		if part.Last {
			return doc, nil
		}
	}
}
