package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/internal/names"
	"github.com/meshd/meshd/host/mesh"
)

// SubjectPrefix is the prefix of the subjects calls travel on.
const SubjectPrefix = "meshd.svc."

// A call's request data is a frame of FrameLen bytes followed by the
// abi.Request encoding:
//
//	u8  FrameVersion
//	u32 the time the callee's node has to answer, in whole milliseconds
//	    (at least 1), little-endian
//	u8  the call depth the callee runs at (mesh.DepthFrom of the call's
//	    context), 0 to mesh.MaxDepth
//
// The request carries no NATS headers, and neither does the answer of a
// call that succeeded (the abi.Response encoding): headers cost every
// hop of a message (the clients encode and parse them as MIME, the
// servers scan them), binary fields next to the data cost nothing.
const (
	// FrameVersion is the first byte of a call's request data. A node
	// answers a request of another version Invalid.
	FrameVersion = 1
	// FrameLen is the length of a call's frame.
	FrameLen = 6
)

// errFrameVersion is the error of a request from a node of another meshd
// version, which a node answers Unavailable (503, tried elsewhere) rather
// than Invalid: during a rolling upgrade the request is good, the pair of
// nodes is not.
var errFrameVersion = errors.New("a call from a node of another meshd version")

// appendFrame appends the frame of a call with timeout left and depth.
func appendFrame(b []byte, timeout time.Duration, depth int) []byte {
	ms := min(max(timeout.Milliseconds(), 1), math.MaxUint32)
	b = append(b, FrameVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(ms))
	return append(b, byte(min(max(depth, 0), 255)))
}

// parseFrame returns the timeout and depth of a call's request data and
// the abi.Request encoding after them.
func parseFrame(data []byte) (timeout time.Duration, depth int, rest []byte, err error) {
	if len(data) < FrameLen {
		return 0, 0, nil, fmt.Errorf("request of %d bytes is shorter than its %d-byte frame", len(data), FrameLen)
	}
	if data[0] != FrameVersion {
		return 0, 0, nil, fmt.Errorf("%w: request frame version %d, want %d", errFrameVersion, data[0], FrameVersion)
	}
	ms := binary.LittleEndian.Uint32(data[1:5])
	if ms == 0 {
		return 0, 0, nil, errors.New("request frame: a deadline of 0 ms")
	}
	depth = int(data[5])
	if depth > mesh.MaxDepth {
		return 0, 0, nil, fmt.Errorf("request frame: call depth %d is not 0 to %d", depth, mesh.MaxDepth)
	}
	return time.Duration(ms) * time.Millisecond, depth, data[FrameLen:], nil
}

// Headers of the reply of a call that failed on the callee's node; it
// has no data.
const (
	// HeaderFault is set on the reply of a failed call: the name of its
	// fault.Kind ("busy", "timeout", ...).
	HeaderFault = "Meshd-Fault"
	// HeaderError is the failure's message, at most MaxErrorBytes, Go
	// escaped (printable ASCII).
	HeaderError = "Meshd-Error"
	// HeaderRetry is the failure's Retry-After in milliseconds, when it
	// has one.
	HeaderRetry = "Meshd-Retry-Ms"
	// HeaderNode is the node that answered.
	HeaderNode = "Meshd-Node"
)

// Bounds.
const (
	// MaxErrorBytes bounds a failure's message in a reply, and the part of
	// a reply's message a caller keeps.
	MaxErrorBytes = 256
	// MaxNodeBytes bounds a node name.
	MaxNodeBytes = 128
	// headerRoom is what a call's headers may take besides the encoded
	// request or answer; the data gets the connection's maximum payload
	// less this.
	headerRoom = 1024
)

// Errors.
var (
	// ErrInvalidName is returned for a service or node name that cannot be
	// used (see abi.ValidServiceName; a node name is 1 to MaxNodeBytes
	// bytes).
	ErrInvalidName = errors.New("remote: invalid name")
	// ErrClosed is returned by a closed Server or Directory.
	ErrClosed = errors.New("remote: closed")
)

// Subject returns the subject and queue group calls to service travel on.
// Service names (abi.ValidServiceName: lower-case letters, digits, '_' and
// '-') need no escaping in a NATS subject; any other name is refused.
func Subject(service string) (string, error) {
	if !abi.ValidServiceName(service) {
		return "", fmt.Errorf("%w: service %s", ErrInvalidName, names.Display(service))
	}
	return SubjectPrefix + service, nil
}

// kindByName maps a fault.Kind's name back to the Kind.
var kindByName = func() map[string]fault.Kind {
	m := make(map[string]fault.Kind)
	for k := fault.Kind(0); k < 255; k++ {
		name := k.String()
		if strings.HasPrefix(name, "kind ") {
			break
		}
		m[name] = k
	}
	return m
}()

// kindOf returns the Kind named name, Failed for a name it does not know
// (a newer node's kind).
func kindOf(name string) fault.Kind {
	if k, ok := kindByName[name]; ok {
		return k
	}
	return fault.Failed
}

// bounded returns s Go-escaped to printable ASCII (without quotes) and cut
// to at most n bytes on an escape boundary, marked with s's full length
// when cut.
func bounded(s string, n int) string {
	q := strconv.QuoteToASCII(s)
	q = q[1 : len(q)-1]
	if len(q) <= n {
		return q
	}
	suffix := "...(" + strconv.Itoa(len(s)) + " bytes)"
	budget := max(n-len(suffix), 0)
	var b strings.Builder
	for _, r := range s {
		e := strconv.QuoteToASCII(string(r))
		e = e[1 : len(e)-1]
		if b.Len()+len(e) > budget {
			break
		}
		b.WriteString(e)
	}
	b.WriteString(suffix)
	return b.String()
}

// millis formats d as whole milliseconds, at least 1.
func millis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// RemoteError is the cause of a failure a call met on another node: the
// failure's message as that node gave it (bounded and escaped). The
// fault.Error around it carries its kind.
type RemoteError struct {
	Node    string // the node that answered, escaped; "" when it did not say
	Message string
}

func (e *RemoteError) Error() string {
	if e.Node == "" {
		return "remote: " + e.Message
	}
	return "remote: node " + e.Node + ": " + e.Message
}
