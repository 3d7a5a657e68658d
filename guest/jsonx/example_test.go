package jsonx_test

import (
	"fmt"

	"github.com/meshd/meshd/guest/jsonx"
)

func ExampleWriter() {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("id", "a\"1")
	w.Key("items")
	w.ArrayStart()
	w.Int(1)
	w.Int(2)
	w.ArrayEnd()
	w.BoolField("ok", true)
	w.ObjectEnd()
	fmt.Println(string(w.Bytes()))
	// Output: {"id":"a\"1","items":[1,2],"ok":true}
}

func ExampleReader() {
	var r jsonx.Reader
	r.Reset([]byte(`{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`))
	var total int64
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "items":
			for r.ArrayNext() {
				for k, ok := r.ObjectNext(); ok; k, ok = r.ObjectNext() {
					if string(k) == "price" {
						total += r.Int()
					} else {
						r.Skip()
					}
				}
			}
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(total)
	// Output: 1550000
}

func ExampleValidate() {
	fmt.Println(jsonx.Validate([]byte(`{"a":[1,2,]}`)))
	// Output: jsonx: invalid character ']', expected a value at offset 10
}
