package remote

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/internal/names"
)

// SubjectPrefix is the prefix of the subjects calls travel on.
const SubjectPrefix = "meshd.svc."

// Headers of a call's request and reply.
const (
	// HeaderDeadline is the time the callee's node has to answer, in
	// whole milliseconds (at least 1).
	HeaderDeadline = "Meshd-Deadline-Ms"
	// HeaderDepth is the call depth the callee runs at (mesh.DepthFrom of
	// the call's context), 0 to mesh.MaxDepth.
	HeaderDepth = "Meshd-Depth"
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
