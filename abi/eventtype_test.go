package abi_test

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/abi"
)

func TestEventTypes(t *testing.T) {
	for typ, ok := range map[string]bool{"ORDER_CREATED": true, "order.created": true, "a-b_9": true, strings.Repeat("a", 128): true,
		"": false, "a b": false, "a.*": false, "a.>": false, ".a": false, "a.": false, "a..b": false, "a:b": false, "é": false, strings.Repeat("a", 129): false} {
		if err := abi.ValidEventType(typ); (err == nil) != ok {
			t.Errorf("ValidEventType(%q) = %v, want ok=%v", typ, err, ok)
		}
	}
}
