package dispatch

import (
	"encoding/json"
	"testing"
)

// FuzzTopString: serial-key extraction reads event data a guest published:
// any bytes are handled without a panic, and a key it finds is a string
// field of the top-level object.
func FuzzTopString(f *testing.F) {
	for _, s := range []string{
		`{"order_id":"o-1","items":[{"order_id":"x"}]}`,
		`{"a":{"order_id":"inner"},"order_id":"outer"}`,
		`{"order_id":1}`, `[{"order_id":"x"}]`, `{"order_id":"\u00e9\ud800"}`, `{`, ``,
	} {
		f.Add([]byte(s), "order_id")
	}
	f.Fuzz(func(t *testing.T, data []byte, field string) {
		v, ok := topString(data, field)
		if !ok {
			if v != "" {
				t.Fatalf("no key but %q", v)
			}
			return
		}
		if !json.Valid(data) {
			return // found before the error; the handler decides about the rest
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("key %q from data that is not an object: %v", v, err)
		}
		if _, present := m[field]; !present {
			t.Fatalf("key %q for field %q, which the object lacks", v, field)
		}
	})
}
