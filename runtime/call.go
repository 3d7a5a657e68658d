package runtime

import (
	"context"

	"github.com/meshd/meshd/abi"
)

// Call is one invocation's input, output and result. A Call is owned by one
// goroutine; reuse it with Reset to keep its buffers.
type Call struct {
	// Input is what the guest reads with input_read.
	Input []byte
	// Output collects what the guest writes with output_write.
	Output []byte
	// Code is the code the export returned (abi.CodeOK on success).
	Code abi.Code
	// Data is the caller's state for its host functions (see CallFrom):
	// meshd's host package puts its Invocation here. The runtime only
	// carries it.
	Data Hook

	maxOutput int
	overflow  bool
	lastErr   string
}

// Reset empties c for reuse, keeping its buffers.
func (c *Call) Reset() {
	c.Input = c.Input[:0]
	c.Output = c.Output[:0]
	c.Code = abi.CodeOK
	c.Data = nil
	c.maxOutput = 0
	c.overflow = false
	c.lastErr = ""
}

// WriteOutput appends p to the output, or returns abi.CodeTooLarge when the
// output would pass its cap (the call then fails with ErrTooLarge).
func (c *Call) WriteOutput(p []byte) abi.Code {
	if c.maxOutput > 0 && len(c.Output)+len(p) > c.maxOutput {
		c.overflow = true
		return abi.CodeTooLarge
	}
	c.Output = append(c.Output, p...)
	return abi.CodeOK
}

// SetError records msg as the message last_error returns and gives the
// negative code a host function returns.
func (c *Call) SetError(code abi.Code, msg string) int32 {
	c.lastErr = msg
	return -int32(code)
}

// LastError is the message of the last failed host call.
func (c *Call) LastError() string { return c.lastErr }

// Hook is what a caller attaches to a Call for its host functions (the
// host package's *Invocation: request ids, buffered effects). CallHook
// marks the types meant for it, so that no stray value rides along.
type Hook interface{ CallHook() }

type callKey struct{}

// CallFrom returns the Call running on ctx, or nil outside an invocation.
// Host functions use it to reach the call's input, output and Data.
func CallFrom(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}
