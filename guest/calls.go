package guest

import (
	"fmt"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/guest/jsonx"
)

// Publish publishes an event of the given type with data (JSON). The event
// is sent only if the current call succeeds. The type must have been
// declared with Publishes and granted by the operator.
func Publish(eventType string, data []byte) error {
	if ret := host.publish(eventType, data); ret < 0 {
		return callErr(ret)
	}
	return nil
}

// KVGet returns a copy of the value of key in the service's store, or
// ErrNotFound. It sees the current call's own pending writes.
func KVGet(key string) ([]byte, error) {
	buf, n, err := fill(kvBuf, 1024, func(b []byte) int32 { return host.kvGet(key, b) })
	kvBuf = buf
	if err != nil {
		return nil, err
	}
	v := make([]byte, n)
	copy(v, kvBuf[:n])
	return v, nil
}

// KVSet writes key. The write is applied only if the current call succeeds.
func KVSet(key string, value []byte) error {
	if ret := host.kvSet(key, value); ret < 0 {
		return callErr(ret)
	}
	return nil
}

// KVDelete deletes key (absent is fine). It is applied only if the current
// call succeeds.
func KVDelete(key string) error {
	if ret := host.kvDelete(key); ret < 0 {
		return callErr(ret)
	}
	return nil
}

// Discover describes a loaded service, or returns ErrNotFound. The
// operator must grant the lookup.
func Discover(name string) (abi.ServiceInfo, error) {
	buf, n, err := fill(kvBuf, 256, func(b []byte) int32 { return host.discover(name, b) })
	kvBuf = buf
	if err != nil {
		return abi.ServiceInfo{}, err
	}
	return parseServiceInfo(kvBuf[:n])
}

func parseServiceInfo(b []byte) (abi.ServiceInfo, error) {
	var info abi.ServiceInfo
	var r jsonx.Reader
	r.Reset(b)
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "name":
			info.Name = r.String()
		case "status":
			info.Status = r.String()
		case "version":
			info.Version = r.String()
		case "instances":
			info.Instances = int(r.Int())
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return abi.ServiceInfo{}, &Error{Code: abi.CodeInternal, Msg: "discover: " + err.Error()}
	}
	return info, nil
}

// Level is a log level.
type Level int32

// Log levels.
const (
	LevelDebug Level = Level(abi.LevelDebug)
	LevelInfo  Level = Level(abi.LevelInfo)
	LevelWarn  Level = Level(abi.LevelWarn)
	LevelError Level = Level(abi.LevelError)
)

// String returns the level's name: DEBUG, INFO, WARN or ERROR.
func (l Level) String() string {
	switch {
	case l <= LevelDebug:
		return "DEBUG"
	case l == LevelInfo:
		return "INFO"
	case l == LevelWarn:
		return "WARN"
	}
	return "ERROR"
}

// Log writes a log line for the service. The host adds the service name and
// the request id.
func Log(level Level, msg string) {
	host.log(int32(level), msg)
}

// Debugf logs at debug level. It formats with fmt; prefer Log on hot paths.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs at info level. It formats with fmt; prefer Log on hot paths.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs at warn level. It formats with fmt; prefer Log on hot paths.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs at error level. It formats with fmt; prefer Log on hot paths.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }
