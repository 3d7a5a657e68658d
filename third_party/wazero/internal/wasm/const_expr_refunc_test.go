package wasm

import (
	"testing"

	"github.com/tetratelabs/wazero/internal/testing/require"
)

func TestConstantExpression_RefFunc(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		idx  Index
		ok   bool
	}{
		{data: []byte{OpcodeRefFunc, 5, OpcodeEnd}, idx: 5, ok: true},
		{data: []byte{OpcodeRefFunc, 0x80, 0x01, OpcodeEnd}, idx: 128, ok: true},
		{data: []byte{OpcodeRefFunc, 0x80, OpcodeEnd}},                         // truncated index
		{data: []byte{OpcodeRefFunc, 5, OpcodeNop, OpcodeEnd}},                 // more than one instruction
		{data: []byte{OpcodeI32Const, 5, OpcodeEnd}},                           // not ref.func
		{data: []byte{OpcodeRefFunc, 5}},                                       // no end
		{data: []byte{OpcodeRefFunc, 0x80, 0x80, 0x80, 0x80, 0x10, OpcodeEnd}}, // index past 32 bits
	} {
		e := ConstantExpression{Data: tc.data}
		idx, ok := e.RefFunc()
		require.Equal(t, tc.ok, ok, "%x", tc.data)
		require.Equal(t, tc.idx, idx, "%x", tc.data)
	}
}
