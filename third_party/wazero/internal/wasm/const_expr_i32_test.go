package wasm

import (
	"testing"

	"github.com/tetratelabs/wazero/internal/testing/require"
)

// meshd patch: I32Const recognises exactly one i32.const followed by end,
// and agrees with the general evaluator on it.
func TestConstantExpression_I32Const(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want int32
		ok   bool
	}{
		{name: "zero", data: []byte{OpcodeI32Const, 0, OpcodeEnd}, want: 0, ok: true},
		{name: "multi-byte", data: []byte{OpcodeI32Const, 0x80, 0x80, 0x04, OpcodeEnd}, want: 65536, ok: true},
		{name: "negative", data: []byte{OpcodeI32Const, 0x7f, OpcodeEnd}, want: -1, ok: true},
		{name: "no end", data: []byte{OpcodeI32Const, 1}},
		{name: "trailing op", data: []byte{OpcodeI32Const, 1, OpcodeI32Const, 2, OpcodeI32Add, OpcodeEnd}},
		{name: "truncated leb", data: []byte{OpcodeI32Const, 0x80, OpcodeEnd}},
		{name: "i64", data: []byte{OpcodeI64Const, 1, OpcodeEnd}},
		{name: "global", data: []byte{OpcodeGlobalGet, 0, OpcodeEnd}},
		{name: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ConstantExpression{Data: tc.data}
			v, ok := e.I32Const()
			require.Equal(t, tc.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tc.want, v)
			vals, typ, err := evaluateConstExpr(&e, nil, nil)
			require.NoError(t, err)
			require.Equal(t, ValueTypeI32, typ)
			require.Equal(t, uint64(uint32(v)), vals[0])
		})
	}
}
