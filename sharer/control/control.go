// Package control is the protocol between the port-sharing daemon and its
// workers, spoken over a Unix-domain SOCK_SEQPACKET socket.
//
// Every message is one datagram of at most MaxMessage bytes:
//
//	version (1 byte) | type (1 byte) | header length (4 bytes, big endian) | JSON header | payload
//
// The payload carries raw bytes (the bytes a hand-off already read, or a
// chunk of a status reply). A hand-off also carries exactly one file
// descriptor as SCM_RIGHTS ancillary data. A peer that receives a message of
// another version answers TypeError with code "version" and closes.
//
// The conversation:
//
//	worker → daemon  Register      routes, name, max in-flight
//	daemon → worker  Registered    or Error (conflict, denied, backoff, bad_route, …)
//	daemon → worker  Handoff + fd  one accepted connection, with its pre-read bytes
//	worker → daemon  Ack           when the worker's Accept takes the connection
//	worker → daemon  Unregister    drop some of its own routes (or just close)
//	daemon → worker  Evicted       before the daemon closes a worker (compat policy)
//	any    → daemon  Status        answered by StatusReply chunks
package control

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the protocol version this build speaks.
const Version = 1

// MaxMessage is the largest datagram either side sends or accepts. It bounds
// a hand-off's pre-read bytes (the sniffer stops far below it).
const MaxMessage = 64 << 10

const headerPrefix = 6

// Type names a message.
type Type uint8

const (
	TypeRegister Type = iota + 1
	TypeRegistered
	TypeError
	TypeUnregister
	TypeUnregistered
	TypeHandoff
	TypeAck
	TypeEvicted
	TypeStatus
	TypeStatusReply
)

var typeNames = map[Type]string{
	TypeRegister: "register", TypeRegistered: "registered", TypeError: "error",
	TypeUnregister: "unregister", TypeUnregistered: "unregistered", TypeHandoff: "handoff",
	TypeAck: "ack", TypeEvicted: "evicted", TypeStatus: "status", TypeStatusReply: "status_reply",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Register asks the daemon to route connections for Routes to this worker.
// Workers with the same Name and uid share routes (a worker pool); any other
// registration of a held route is a conflict.
type Register struct {
	Name        string   `json:"name"`
	Routes      []string `json:"routes"`
	MaxInflight int      `json:"max_inflight"` // hand-offs this worker may hold un-acknowledged; ≥ 1
	PID         int      `json:"pid"`
}

// Registered confirms a registration.
type Registered struct {
	ID          uint64   `json:"id"`
	Routes      []string `json:"routes"` // canonical form
	Policy      string   `json:"policy"`
	MaxInflight int      `json:"max_inflight"` // what the daemon grants (compat: 1)
}

// Error codes.
const (
	CodeVersion    = "version"
	CodeBadMessage = "bad_message"
	CodeBadRoute   = "bad_route"
	CodeDenied     = "denied"
	CodeConflict   = "conflict"
	CodeBackoff    = "backoff"
	CodePortInUse  = "port_in_use"
	CodeNotOwner   = "not_owner"
	CodeShutdown   = "shutdown"
)

// Error refuses a request. RetryAfterMS is set with CodeBackoff.
type Error struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Unregister drops routes the sender registered; Unregistered confirms.
type Unregister struct {
	Routes []string `json:"routes"`
}

// Unregistered confirms an Unregister.
type Unregistered struct {
	Routes []string `json:"routes"`
}

// Handoff passes one accepted connection; its fd travels as SCM_RIGHTS and
// the bytes the daemon already read are the payload. The worker must Ack
// before Deadline or the daemon counts a dispatch timeout.
type Handoff struct {
	ID       uint64 `json:"id"`
	Route    string `json:"route"`
	Via      string `json:"via"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Deadline int64  `json:"deadline_unix_ns"`
}

// Ack acknowledges a hand-off: the worker's Accept took it. Expired means
// the worker found it past its deadline and closed it instead; Refused that
// the worker could not take it at all (its descriptor was lost, say), with
// the reason.
type Ack struct {
	ID      uint64 `json:"id"`
	Expired bool   `json:"expired,omitempty"`
	Refused string `json:"refused,omitempty"`
}

// Evicted tells a worker why the daemon is about to close it.
type Evicted struct {
	Reason       string `json:"reason"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// Status asks for the daemon's state; StatusReply chunks carry the JSON
// document as payload, the last one with Last set.
type Status struct{}

// StatusReply is one chunk of a status document.
type StatusReply struct {
	Part int  `json:"part"`
	Last bool `json:"last"`
}

// Encode appends one message to b.
func Encode(b []byte, t Type, header any, payload []byte) ([]byte, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return b, err
	}
	if headerPrefix+len(h)+len(payload) > MaxMessage {
		return b, fmt.Errorf("%w: %s message of %d bytes exceeds %d", ErrTooLarge, t, headerPrefix+len(h)+len(payload), MaxMessage)
	}
	b = append(b, Version, byte(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	b = append(b, h...)
	return append(b, payload...), nil
}

// ErrTooLarge is returned by Encode (and Send) for a message over MaxMessage.
var ErrTooLarge = errors.New("control: message too large")

// ErrVersion is returned by Decode for a message of another protocol version.
var ErrVersion = errors.New("control: unsupported protocol version")

// Decode splits one message into its type, JSON header and payload. The
// returned slices alias msg.
func Decode(msg []byte) (t Type, header, payload []byte, err error) {
	if len(msg) < headerPrefix {
		return 0, nil, nil, fmt.Errorf("control: short message (%d bytes)", len(msg))
	}
	if msg[0] != Version {
		return 0, nil, nil, fmt.Errorf("%w %d (this side speaks %d)", ErrVersion, msg[0], Version)
	}
	n := binary.BigEndian.Uint32(msg[2:6])
	if uint64(n) > uint64(len(msg)-headerPrefix) {
		return 0, nil, nil, fmt.Errorf("control: header length %d exceeds message", n)
	}
	return Type(msg[1]), msg[headerPrefix : headerPrefix+int(n)], msg[headerPrefix+int(n):], nil
}
