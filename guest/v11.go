package guest

import (
	"time"

	"github.com/meshd/meshd/abi"
)

// hostV11 is the host functions added in ABI v1.1. They are imported only
// by guests that call PublishDelayed or Config; a v1 host links neither.
type hostV11 interface {
	publishDelayed(typ string, data []byte, delayMS int32) int32
	configGet(key string, buf []byte) int32
}

var cfgBuf []byte

// PublishDelayed publishes an event to be delivered after delay (rounded
// down to milliseconds, at most abi.MaxDelay, about 24.8 days: the ABI
// carries milliseconds in an i32). Like Publish, it is sent only if
// the current call succeeds; the delay counts from then. The schedule is
// durable: it survives a host restart. Needs a host with ABI v1.1.
func PublishDelayed(eventType string, data []byte, delay time.Duration) error {
	h, ok := host.(hostV11)
	if !ok {
		return &Error{Code: abi.CodeUnavailable, Msg: "publish_delayed needs ABI v1.1"}
	}
	if delay < 0 || delay > abi.MaxDelay {
		return &Error{Code: abi.CodeInvalid, Msg: "delay must be between 0 and " + abi.MaxDelay.String()}
	}
	if ret := h.publishDelayed(eventType, data, int32(delay/time.Millisecond)); ret < 0 {
		return callErr(ret)
	}
	return nil
}

// Config returns the operator's configuration value of key (the [config]
// table of the service's <name>.toml), or ErrNotFound. Needs a host with
// ABI v1.1.
func Config(key string) (string, error) {
	h, ok := host.(hostV11)
	if !ok {
		return "", &Error{Code: abi.CodeUnavailable, Msg: "config_get needs ABI v1.1"}
	}
	buf, n, err := fill(cfgBuf, 128, func(b []byte) int32 { return h.configGet(key, b) })
	cfgBuf = buf
	if err != nil {
		return "", err
	}
	return string(cfgBuf[:n]), nil
}
