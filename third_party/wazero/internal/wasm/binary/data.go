package binary

import (
	"bytes"
	"fmt"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/internal/leb128"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// dataSegmentPrefix represents three types of data segments.
//
// https://www.w3.org/TR/2022/WD-wasm-core-2-20220419/binary/modules.html#data-section
type dataSegmentPrefix = uint32

const (
	// dataSegmentPrefixActive is the prefix for the version 1.0 compatible data segment, which is classified as "active" in 2.0.
	dataSegmentPrefixActive dataSegmentPrefix = 0x0
	// dataSegmentPrefixPassive prefixes the "passive" data segment as in version 2.0 specification.
	dataSegmentPrefixPassive dataSegmentPrefix = 0x1
	// dataSegmentPrefixActiveWithMemoryIndex is the active prefix with memory index encoded which is defined for futur use as of 2.0.
	dataSegmentPrefixActiveWithMemoryIndex dataSegmentPrefix = 0x2
)

func decodeDataSegment(r *bytes.Reader, src []byte, enabledFeatures api.CoreFeatures, ret *wasm.DataSegment) (err error) {
	dataSegmentPrefx, _, err := leb128.DecodeUint32(r)
	if err != nil {
		err = fmt.Errorf("read data segment prefix: %w", err)
		return
	}

	if dataSegmentPrefx != dataSegmentPrefixActive {
		if err = enabledFeatures.RequireEnabled(api.CoreFeatureBulkMemoryOperations); err != nil {
			err = fmt.Errorf("non-zero prefix for data segment is invalid as %w", err)
			return
		}
	}

	switch dataSegmentPrefx {
	case dataSegmentPrefixActive,
		dataSegmentPrefixActiveWithMemoryIndex:
		// Active data segment as in
		// https://www.w3.org/TR/2022/WD-wasm-core-2-20220419/binary/modules.html#data-section
		if dataSegmentPrefx == 0x2 {
			d, _, err := leb128.DecodeUint32(r)
			if err != nil {
				return fmt.Errorf("read memory index: %v", err)
			} else if d != 0 {
				return fmt.Errorf("memory index must be zero but was %d", d)
			}
		}

		if e, ok := readSharedI32Const(r, src); ok {
			ret.OffsetExpression.Data = e
		} else if err = decodeConstantExpression(r, enabledFeatures, &ret.OffsetExpression); err != nil {
			return fmt.Errorf("read offset expression: %v", err)
		}
	case dataSegmentPrefixPassive:
		// Passive data segment doesn't need const expr nor memory index encoded.
		// https://www.w3.org/TR/2022/WD-wasm-core-2-20220419/binary/modules.html#data-section
		ret.Passive = true
	default:
		err = fmt.Errorf("invalid data segment prefix: 0x%x", dataSegmentPrefx)
		return
	}

	vs, _, err := leb128.DecodeUint32(r)
	if err != nil {
		err = fmt.Errorf("get the size of vector: %v", err)
		return
	}

	if ret.Init, err = readShared(r, src, int64(vs)); err != nil {
		err = fmt.Errorf("read bytes for init: %v", err)
	}
	return
}

// readSharedI32Const reads a constant expression that is a single i32.const
// as a slice of src (meshd patch): the offset of nearly every data segment,
// tens of thousands in a Go-built module, each a small allocation when
// decoded by decodeConstantExpression. ok is false, and nothing is read,
// for any other expression.
func readSharedI32Const(r *bytes.Reader, src []byte) ([]byte, bool) {
	b := src[len(src)-r.Len():]
	if len(b) < 3 || b[0] != wasm.OpcodeI32Const {
		return nil, false
	}
	_, n, err := leb128.LoadInt32(b[1:])
	if err != nil || len(b) < int(n)+2 || b[n+1] != wasm.OpcodeEnd {
		return nil, false
	}
	e, err := readShared(r, src, int64(n)+2)
	return e, err == nil
}
