package abi

// ModuleName is the import module every host function lives in.
const ModuleName = "meshd"

// Version is the ABI version this package describes.
const Version = 1

// Guest exports. A module without ExportMarker is refused at load.
const (
	// ExportMarker marks a module as built for ABI v1. Signature: () -> ().
	// It is never called.
	ExportMarker = "meshd_abi_v1"
	// ExportDescribe writes the module's Declaration (JSON) with output_write
	// and returns a Code. Signature: () -> i32. Required.
	ExportDescribe = "meshd_describe"
	// ExportHTTP handles one HTTP request. Its argument is the length of the
	// encoded Request waiting to be read with input_read; it writes an encoded
	// Response with output_write and returns a Code. Signature: (i32) -> i32.
	// Required when the module declares routes.
	ExportHTTP = "meshd_http"
	// ExportEvent handles one event. Its argument is the length of the
	// encoded Event waiting to be read with input_read; it returns CodeOK to
	// acknowledge the event, anything else to have it redelivered. Output, if
	// any, is an error message. Signature: (i32) -> i32. Required when the
	// module declares subscriptions.
	ExportEvent = "meshd_event"
	// ExportInitialize is the WASI reactor initialiser. When present the host
	// calls it once per instance before anything else.
	ExportInitialize = "_initialize"
	// ExportMemory is the guest's linear memory. Required.
	ExportMemory = "memory"
)

// Host functions, imported from ModuleName. Every function returns an i32:
// a non-negative value is success (a length, or 0), a negative value is the
// negated Code of the failure, whose message last_error returns. Pointers and
// lengths are i32 offsets into the guest's exported memory; the host checks
// each one and answers CodeBadPointer for any range outside memory.
const (
	// FnInputRead (buf_ptr, buf_cap i32) -> i32: copies the current
	// invocation's input into the guest buffer and returns its length. When
	// buf_cap is smaller than the input, nothing is copied and the length is
	// still returned, so the guest can grow its buffer and ask again.
	FnInputRead = "input_read"
	// FnOutputWrite (ptr, len i32) -> i32: appends len bytes to the
	// invocation's output. CodeTooLarge when the output cap would be passed.
	FnOutputWrite = "output_write"
	// FnLastError (buf_ptr, buf_cap i32) -> i32: copies the message of the
	// last failed host call in this invocation (same grow-and-retry rule as
	// input_read). Returns 0 when there was none.
	FnLastError = "last_error"
	// FnLog (level, ptr, len i32) -> i32: writes a log line for the service.
	// level is one of the Level constants.
	FnLog = "log"
	// FnPublish (type_ptr, type_len, data_ptr, data_len i32) -> i32:
	// publishes an event of the given type with the given data (JSON). The
	// event is sent only if the invocation succeeds.
	FnPublish = "publish"
	// FnKVGet (key_ptr, key_len, buf_ptr, buf_cap i32) -> i32: reads a key of
	// the service's own store. Same grow-and-retry rule as input_read;
	// -CodeNotFound when the key does not exist.
	FnKVGet = "kv_get"
	// FnKVSet (key_ptr, key_len, val_ptr, val_len i32) -> i32: writes a key.
	// The write is applied only if the invocation succeeds; reads in the same
	// invocation see it.
	FnKVSet = "kv_set"
	// FnKVDelete (key_ptr, key_len i32) -> i32: deletes a key, applied only if
	// the invocation succeeds.
	FnKVDelete = "kv_delete"
	// FnDiscover (name_ptr, name_len, buf_ptr, buf_cap i32) -> i32: describes
	// a service as ServiceInfo JSON (grow-and-retry rule); -CodeNotFound when
	// no such service is loaded.
	FnDiscover = "discover"
)

// Code is a status that crosses the boundary: returned (negated) by host
// functions, and returned by guest exports.
type Code int32

// Codes of ABI v1. Values are fixed forever; new codes take new values.
const (
	CodeOK          Code = 0
	CodeBadPointer  Code = 1 // a pointer or length outside the guest's memory
	CodeNotFound    Code = 2 // no such key, service or input
	CodeTooLarge    Code = 3 // a value passes a size cap
	CodeDenied      Code = 4 // the operator did not grant this
	CodeInvalid     Code = 5 // a malformed argument (empty key, bad UTF-8 name, ...)
	CodeUnavailable Code = 6 // the backing service is down or not ready
	CodeTimeout     Code = 7 // the operation ran past its deadline
	CodeInternal    Code = 8 // anything else; the message says what
)

var codeNames = [...]string{
	CodeOK:          "ok",
	CodeBadPointer:  "bad pointer",
	CodeNotFound:    "not found",
	CodeTooLarge:    "too large",
	CodeDenied:      "denied",
	CodeInvalid:     "invalid argument",
	CodeUnavailable: "unavailable",
	CodeTimeout:     "timeout",
	CodeInternal:    "internal error",
}

// String returns the code's name.
func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code " + itoa(int(c))
}

// Log levels for FnLog. They match log/slog's levels divided by four.
const (
	LevelDebug int32 = -1
	LevelInfo  int32 = 0
	LevelWarn  int32 = 1
	LevelError int32 = 2
)

// Declaration is what a module says about itself from ExportDescribe, as
// JSON. The operator's grants decide whether it may load.
type Declaration struct {
	// Name, if set, must equal the service name the host gives the module
	// (its file name without ".wasm").
	Name string `json:"name,omitempty"`
	// Version is the module author's version string, shown beside the hash.
	Version string `json:"version,omitempty"`
	// Routes are served through the gateway.
	Routes []Route `json:"routes,omitempty"`
	// Subscriptions are the event types delivered to ExportEvent.
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	// Publishes lists the event types the module may publish.
	Publishes []string `json:"publishes,omitempty"`
}

// Route is one HTTP route: a method and a Go 1.22 net/http path pattern
// ("/orders/{id}").
type Route struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Internal (ABI v1.2) marks a route other services may call (FnCall)
	// that the gateway does not serve. Omitted when false, so a v1
	// declaration reads the same; a host before v1.2 ignores the field.
	Internal bool `json:"internal,omitempty"`
}

// Subscription asks for events of one type.
type Subscription struct {
	Type string `json:"type"`
}

// ServiceInfo is the JSON answer of FnDiscover.
type ServiceInfo struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Version   string `json:"version"`
	Instances int    `json:"instances"`
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
