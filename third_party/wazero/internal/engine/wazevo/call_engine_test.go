package wazevo

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasmruntime"
)

func TestCallEngine_init(t *testing.T) {
	c := &callEngine{}
	c.init()
	require.True(t, c.stackTop%16 == 0)
	require.Equal(t, &c.stack[0], c.execCtx.stackBottomPtr)
}

func TestCallEngine_growStack(t *testing.T) {
	t.Run("stack overflow", func(t *testing.T) {
		c := &callEngine{stack: make([]byte, callStackCeiling+1)}
		_, _, err := c.growStack()
		require.Error(t, err)
	})

	t.Run("ok", func(t *testing.T) {
		s := make([]byte, 32)
		for i := range s {
			s[i] = byte(i)
		}
		c := &callEngine{
			stack:    s,
			stackTop: uintptr(unsafe.Pointer(&s[15])),
			execCtx: executionContext{
				stackGrowRequiredSize:    160,
				stackPointerBeforeGoCall: (*uint64)(unsafe.Pointer(&s[10])),
				framePointerBeforeGoCall: uintptr(unsafe.Pointer(&s[14])),
			},
		}
		newSP, newFp, err := c.growStack()
		require.NoError(t, err)
		require.Equal(t, 160+32*2+16, len(c.stack))

		require.True(t, c.stackTop%16 == 0)
		require.Equal(t, &c.stack[0], c.execCtx.stackBottomPtr)

		var view []byte
		{
			//nolint:staticcheck
			sh := (*reflect.SliceHeader)(unsafe.Pointer(&view))
			sh.Data = newSP
			sh.Len = 5
			sh.Cap = 5
		}
		require.Equal(t, []byte{10, 11, 12, 13, 14}, view)
		require.True(t, newSP >= uintptr(unsafe.Pointer(c.execCtx.stackBottomPtr)))
		require.True(t, newSP <= c.stackTop)
		require.Equal(t, newFp-newSP, uintptr(4))
	})
}

// TestCallEngine_growStack_limit: under a limit (meshd patch,
// experimental.WithCallStackLimit) the stack grows to at most the limit,
// and a growth that cannot fit what is in use plus the frame asked for
// under it is a stack overflow.
func TestCallEngine_growStack_limit(t *testing.T) {
	grow := func(t *testing.T, stackLen, limit, required uintptr) (*callEngine, error) {
		s := make([]byte, stackLen)
		c := &callEngine{
			stack:      s,
			stackTop:   alignedStackTop(s),
			stackLimit: limit,
			execCtx: executionContext{
				stackGrowRequiredSize:    required,
				stackPointerBeforeGoCall: (*uint64)(unsafe.Pointer(&s[stackLen/2])),
				framePointerBeforeGoCall: uintptr(unsafe.Pointer(&s[stackLen/2+8])),
			},
		}
		_, _, err := c.growStack()
		return c, err
	}
	t.Run("doubles under the limit", func(t *testing.T) {
		c, err := grow(t, 1024, 1<<20, 160)
		require.NoError(t, err)
		require.Equal(t, 2*1024+160+16, len(c.stack))
	})
	t.Run("capped at the limit", func(t *testing.T) {
		c, err := grow(t, 1024, 1500, 160)
		require.NoError(t, err)
		require.Equal(t, 1500, len(c.stack))
		require.Equal(t, &c.stack[0], c.execCtx.stackBottomPtr)
	})
	t.Run("overflow", func(t *testing.T) {
		c, err := grow(t, 1024, 1024+160+15, 160)
		require.Equal(t, wasmruntime.ErrRuntimeStackOverflow, err)
		require.Equal(t, 1024, len(c.stack))
	})
	t.Run("the limit, not the default ceiling", func(t *testing.T) {
		// Without a limit this length would grow (it is under
		// callStackCeiling).
		_, err := grow(t, 1<<20, 1<<20, 160)
		require.Equal(t, wasmruntime.ErrRuntimeStackOverflow, err)
	})
	t.Run("repeated growth stays under the limit", func(t *testing.T) {
		const limit = 100_000
		s := make([]byte, 10240)
		c := &callEngine{stack: s, stackTop: alignedStackTop(s), stackLimit: limit}
		for i := 0; ; i++ {
			require.True(t, i < 100)
			c.execCtx.stackGrowRequiredSize = 64
			c.execCtx.stackPointerBeforeGoCall = (*uint64)(unsafe.Pointer(&c.stack[len(c.stack)-64]))
			c.execCtx.framePointerBeforeGoCall = uintptr(unsafe.Pointer(&c.stack[len(c.stack)-48]))
			_, _, err := c.growStack()
			if err != nil {
				require.Equal(t, wasmruntime.ErrRuntimeStackOverflow, err)
				break
			}
			require.True(t, len(c.stack) <= limit)
		}
		require.Equal(t, limit, len(c.stack))
	})
}

func TestCallEngine_requiredInitialStackSize(t *testing.T) {
	c := &callEngine{}
	require.Equal(t, 10240, c.requiredInitialStackSize())
	c.sizeOfParamResultSlice = 10
	require.Equal(t, 10240, c.requiredInitialStackSize())
	c.sizeOfParamResultSlice = 1000
	require.Equal(t, 1000*16+32+16, c.requiredInitialStackSize())
}
