package abi

import (
	"math"
	"time"
)

// Host functions added in ABI v1.1. They are optional imports: a v1 guest
// does not import them and runs unchanged. See docs/ABI.md, "Added in v1.1".
const (
	// FnPublishDelayed (type_ptr, type_len, data_ptr, data_len, delay_ms
	// i32) -> i32: like FnPublish, but the event is delivered delay_ms
	// milliseconds after the invocation's effects are applied (0 <= delay_ms
	// <= MaxDelay). Buffered like FnPublish: dropped if the invocation fails.
	FnPublishDelayed = "publish_delayed"
	// FnConfigGet (key_ptr, key_len, buf_ptr, buf_cap i32) -> i32: copies
	// the operator's configuration value of key (the [config] table of the
	// service's <name>.toml) into buf when it fits and returns its length
	// (grow and retry like FnKVGet); -CodeNotFound when there is no such key.
	FnConfigGet = "config_get"
)

// MaxDelay is the longest delay FnPublishDelayed accepts, in every layer
// (the guest SDK, the host function, the event bus's scheduler): the largest
// delay_ms an i32 carries, 2,147,483,647 ms (24 days, 20 h, 31 min, 23.647 s).
const MaxDelay = math.MaxInt32 * time.Millisecond
