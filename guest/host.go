package guest

import (
	"errors"

	"github.com/meshd/meshd/abi"
)

// hostAPI is the host functions of ABI v1 as Go calls. Each returns the raw
// i32 result: a length or 0 on success, a negated abi.Code on failure. The
// wasip1 build binds it to the real imports; tests substitute a fake.
type hostAPI interface {
	inputRead(buf []byte) int32
	outputWrite(b []byte) int32
	lastError(buf []byte) int32
	log(level int32, msg string) int32
	publish(typ string, data []byte) int32
	kvGet(key string, buf []byte) int32
	kvSet(key string, val []byte) int32
	kvDelete(key string) int32
	discover(name string, buf []byte) int32
}

// ErrNotFound is returned when a key, service or input does not exist
// (abi.CodeNotFound).
var ErrNotFound = errors.New("guest: not found")

// Error is a failed host call: its ABI code and the host's message.
type Error struct {
	Code abi.Code
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return "guest: " + e.Code.String()
	}
	return "guest: " + e.Code.String() + ": " + e.Msg
}

// Is makes errors.Is match an *Error against the sentinel of its code
// (ErrDenied, ErrUnavailable, ...; ErrNotFound for abi.CodeNotFound), or
// against any *Error of the same code without a message.
func (e *Error) Is(target error) bool {
	if target == ErrNotFound {
		return e.Code == abi.CodeNotFound
	}
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Code == e.Code
}

// Sentinels of the ABI's codes, for errors.Is. (ErrNotFound is above.)
var (
	ErrBadPointer  error = &Error{Code: abi.CodeBadPointer}
	ErrTooLarge    error = &Error{Code: abi.CodeTooLarge}
	ErrDenied      error = &Error{Code: abi.CodeDenied}
	ErrInvalid     error = &Error{Code: abi.CodeInvalid}
	ErrUnavailable error = &Error{Code: abi.CodeUnavailable}
	ErrTimeout     error = &Error{Code: abi.CodeTimeout}
	ErrInternal    error = &Error{Code: abi.CodeInternal}
)

// Buffers reused across calls. An instance serves one call at a time.
var (
	inBuf  []byte // the call's input
	outBuf []byte // the encoded response
	errBuf []byte // last_error messages
	kvBuf  []byte // kv_get and discover values
)

// grow returns b with capacity at least n, discarding its contents.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:cap(b)]
	}
	c := 2 * cap(b)
	if c < n {
		c = n
	}
	if c < 512 {
		c = 512
	}
	return make([]byte, c)
}

// callErr turns a negative host result into an error, fetching the message
// with last_error.
func callErr(ret int32) error {
	code := abi.Code(-ret)
	if code == abi.CodeNotFound {
		return ErrNotFound
	}
	return &Error{Code: code, Msg: lastErrorMessage()}
}

func lastErrorMessage() string {
	return string(lastErrorBytes())
}

// lastErrorBytes reads the host's last error message into errBuf and
// returns it (nil when the host has none), valid until errBuf is reused.
func lastErrorBytes() []byte {
	errBuf = grow(errBuf, 256)
	for {
		n := host.lastError(errBuf)
		if n < 0 {
			return nil
		}
		if int(n) <= len(errBuf) {
			return errBuf[:n]
		}
		errBuf = grow(errBuf, int(n))
	}
}

// fill calls f with buf (grown as needed) until the value fits, following
// the ABI's grow-and-retry rule. It returns the buffer and the value's
// length, or an error.
func fill(buf []byte, hint int, f func([]byte) int32) ([]byte, int, error) {
	buf = grow(buf, hint)
	for {
		n := f(buf)
		if n < 0 {
			return buf, 0, callErr(n)
		}
		if int(n) <= len(buf) {
			return buf, int(n), nil
		}
		buf = grow(buf, int(n))
	}
}

// readInput reads the call's input of n bytes into inBuf.
func readInput(n int32) ([]byte, error) {
	if n < 0 {
		return nil, &Error{Code: abi.CodeInvalid, Msg: "negative input length"}
	}
	buf, l, err := fill(inBuf, int(n), host.inputRead)
	inBuf = buf
	if err != nil {
		return nil, err
	}
	return inBuf[:l], nil
}

// writeOutput appends b to the call's output.
func writeOutput(b []byte) error {
	if ret := host.outputWrite(b); ret < 0 {
		return callErr(ret)
	}
	return nil
}
