package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWriter(t *testing.T) {
	var w Writer
	w.ObjectStart()
	w.StringField("s", "a\"b\\c\n\x01\u2028é")
	w.IntField("i", -42)
	w.Key("u")
	w.Uint(math.MaxUint64)
	w.BoolField("t", true)
	w.Key("f")
	w.Bool(false)
	w.Key("n")
	w.Null()
	w.Key("a")
	w.ArrayStart()
	w.Int(1)
	w.ArrayStart()
	w.ArrayEnd()
	w.ObjectStart()
	w.ObjectEnd()
	w.StringBytes([]byte("x"))
	w.ArrayEnd()
	w.RawField("r", []byte(`{"z":[1]}`))
	w.ObjectEnd()
	want := `{"s":"a\"b\\c\n\u0001\u2028é","i":-42,"u":18446744073709551615,"t":true,"f":false,"n":null,"a":[1,[],{},"x"],"r":{"z":[1]}}`
	if got := string(w.Bytes()); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(w.Bytes()) {
		t.Fatal("not valid JSON")
	}
	w.Reset()
	w.String("\xff")
	if got := string(w.Bytes()); got != `"\ufffd"` {
		t.Fatalf("invalid UTF-8: %s", got)
	}
}

// TestWriterFirstAllocation: a zero Writer writes an event-sized object
// with one allocation, not one per doubling of its buffer.
func TestWriterFirstAllocation(t *testing.T) {
	var out []byte
	allocs := testing.AllocsPerRun(100, func() {
		var w Writer
		w.ObjectStart()
		w.StringField("order_id", "0b5e8d1c-6a47-4f0e-9d1a-2f3c4b5a6d7e")
		w.StringField("user_id", "bench7")
		w.StringField("payment_id", "pay-0b5e8d1c-6a47-4f0e-9d1a-2f3c4b5a6d7e")
		w.StringField("paid_at", "2026-01-02T03:04:05.000000000Z")
		w.ObjectEnd()
		out = w.Bytes()
	})
	if allocs != 1 || !json.Valid(out) {
		t.Fatalf("%v allocations for %s, want 1", allocs, out)
	}
}

func TestAppendStringEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"":             `""`,
		"plain":        `"plain"`,
		"\b\f\t\r\n":   `"\b\f\t\r\n"`,
		"\x00\x1f":     `"\u0000\u001f"`,
		"a\xc3":        `"a\ufffd"`,
		"\u2029":       `"\u2029"`,
		"😀":            `"😀"`,
		"<&>":          `"<&>"`,
		"\xed\xa0\x80": `"\ufffd\ufffd\ufffd"`, // an encoded surrogate is invalid UTF-8
	} {
		if got := string(AppendString(nil, in)); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestReadOrder(t *testing.T) {
	in := []byte(` {"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mo\u0075se","price":50000,"x":{"y":[null,true,1.5e3]}}],"z":null} `)
	r := NewReader(in)
	var user string
	var names []string
	var total int64
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "user_id":
			user = r.String()
		case "items":
			for r.ArrayNext() {
				for k, ok := r.ObjectNext(); ok; k, ok = r.ObjectNext() {
					switch string(k) {
					case "name":
						names = append(names, r.String())
					case "price":
						total += r.Int()
					default:
						r.Skip()
					}
				}
			}
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
	if user != "user123" || total != 1550000 || strings.Join(names, ",") != "laptop,mouse" {
		t.Fatalf("user %q total %d names %v", user, total, names)
	}
}

func TestReadScalars(t *testing.T) {
	r := NewReader([]byte(`[true,false,null,-0,9223372036854775807,-9223372036854775808,1.25,"\ud83d\ude00\u00e9\/"]`))
	if !r.ArrayNext() || !r.Bool() || !r.ArrayNext() || r.Bool() || !r.ArrayNext() {
		t.Fatal(r.Err())
	}
	if r.Kind() != Null {
		t.Fatal("kind")
	}
	r.Null()
	if !r.ArrayNext() || r.Int() != 0 || !r.ArrayNext() || r.Int() != math.MaxInt64 || !r.ArrayNext() || r.Int() != math.MinInt64 {
		t.Fatal(r.Err())
	}
	if !r.ArrayNext() || r.Float() != 1.25 || !r.ArrayNext() || r.String() != "😀é/" || r.ArrayNext() {
		t.Fatal(r.Err())
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, in string
		read     func(r *Reader)
		off      int
		msg      string
	}{
		{"empty", ``, (*Reader).Skip, 0, "end of input"},
		{"trailing", `{} x`, (*Reader).Skip, 3, "after top-level value"},
		{"trailing comma object", `{"a":1,}`, (*Reader).Skip, 7, "object key"},
		{"trailing comma array", `[1,]`, (*Reader).Skip, 3, "expected a value"},
		{"missing comma", `[1 2]`, (*Reader).Skip, 3, "',' or ']'"},
		{"missing colon", `{"a" 1}`, (*Reader).Skip, 5, "':'"},
		{"unquoted key", `{a:1}`, (*Reader).Skip, 1, "object key"},
		{"leading zero", `01`, (*Reader).Skip, 1, "after top-level value"},
		{"bad fraction", `1.`, (*Reader).Skip, 2, "after '.'"},
		{"bad exponent", `1e+`, (*Reader).Skip, 3, "exponent"},
		{"control char", "\"a\x01\"", (*Reader).Skip, 2, "control character"},
		{"bad escape", `"\x"`, (*Reader).Skip, 1, "invalid escape"},
		{"bad unicode", `"\u12g4"`, (*Reader).Skip, 1, `\u escape`},
		{"unterminated", `"abc`, (*Reader).Skip, 4, "end of input in string"},
		{"unclosed", `[1`, (*Reader).Skip, 2, "end of input"},
		{"bad literal", `tru`, (*Reader).Skip, 0, "invalid literal"},
		{"float as int", `1.5`, func(r *Reader) { r.Int() }, 0, "not an integer"},
		{"overflow", `9223372036854775808`, func(r *Reader) { r.Int() }, 0, "out of range"},
		{"string as int", `"1"`, func(r *Reader) { r.Int() }, 0, "expected a number"},
		{"int as string", `1`, func(r *Reader) { r.StringBytes() }, 0, "expected a string"},
		{"null as bool", `null`, func(r *Reader) { r.Bool() }, 0, "expected a boolean"},
		{"deep", strings.Repeat("[", MaxDepth+1), (*Reader).Skip, MaxDepth, "too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader([]byte(tt.in))
			tt.read(r)
			err := r.Finish()
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SyntaxError", err)
			}
			if se.Offset != tt.off || !strings.Contains(se.Msg, tt.msg) {
				t.Fatalf("err = %v, want offset %d and %q", err, tt.off, tt.msg)
			}
			if json.Valid([]byte(tt.in)) && !strings.Contains(tt.name, " as ") && tt.name != "overflow" {
				t.Fatalf("encoding/json accepts %q", tt.in)
			}
		})
	}
}

func TestRaw(t *testing.T) {
	r := NewReader([]byte(`{"a": [1, {"b":"c"}] , "d":2}`))
	k, ok := r.ObjectNext()
	if !ok || string(k) != "a" {
		t.Fatal(r.Err())
	}
	if raw := string(r.Raw()); raw != `[1, {"b":"c"}]` {
		t.Fatalf("raw %q", raw)
	}
	k, ok = r.ObjectNext()
	if !ok || string(k) != "d" || r.Int() != 2 {
		t.Fatal(r.Err())
	}
	if _, ok := r.ObjectNext(); ok {
		t.Fatal("more members")
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]error{"0": nil, "-1": nil, "00": ErrNotInteger, "-": ErrNotInteger, "": ErrNotInteger,
		"1e3": ErrNotInteger, "99999999999999999999": ErrRange, "-9223372036854775809": ErrRange} {
		if _, err := ParseInt([]byte(in)); err != want {
			t.Errorf("ParseInt(%q) err %v, want %v", in, err, want)
		}
	}
}

// readString decodes b, which must be exactly one string.
func readString(b []byte) (string, error) {
	r := NewReader(b)
	s := r.String()
	return s, r.Finish()
}

// replaceInvalid does what encoding/json does with invalid UTF-8: each bad
// byte becomes U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`,
		`"\ud83d\ude00"`, `"\ud83d"`, `"\ude00\u0041"`, `[1,2.5e-3,-0,true,false,null]`, `{"a":{}}`, ` 1 `, `"\xff"`,
		`[`, `{"a":1,}`, `01`, `"a\tb"`, `1E+2`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Validate(b)
		if (err == nil) != json.Valid(b) {
			t.Fatalf("Validate(%q) = %v, json.Valid = %v", b, err, json.Valid(b))
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(b) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		// encoding/json takes null into a string or an int as "leave it
		// be", not as a value: no oracle for the reader, which wants one.
		if string(bytes.TrimSpace(b)) == "null" {
			return
		}
		var want string
		if json.Unmarshal(b, &want) == nil {
			got, err := readString(b)
			if err != nil || got != want {
				t.Fatalf("string %q: got %q (%v), want %q", b, got, err, want)
			}
		}
		var n int64
		if json.Unmarshal(b, &n) == nil {
			r := NewReader(b)
			if got := r.Int(); r.Finish() != nil || got != n {
				t.Fatalf("int %q: got %d (%v), want %d", b, got, r.Err(), n)
			}
		}
	})
}

func FuzzStringRoundTrip(f *testing.F) {
	for _, s := range []string{"", "abc", "\x00\n\"\\", "\xff\xfe", "\u2028😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := AppendString(nil, s)
		want := replaceInvalid(s)
		var std string
		if err := json.Unmarshal(enc, &std); err != nil || std != want {
			t.Fatalf("encoding/json decodes %s as %q (%v), want %q", enc, std, err, want)
		}
		got, err := readString(enc)
		if err != nil || got != want {
			t.Fatalf("Reader decodes %s as %q (%v), want %q", enc, got, err, want)
		}
		stdEnc, _ := json.Marshal(s)
		if got, err := readString(stdEnc); err != nil || got != want {
			t.Fatalf("Reader decodes encoding/json's %s as %q (%v), want %q", stdEnc, got, err, want)
		}
	})
}

// The order benchmarks compare decoding, summing and encoding the order
// payload plugins handle with jsonx and with encoding/json.

var orderJSON = []byte(`{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`)

type stdItem struct {
	Name  string `json:"name"`
	Price int64  `json:"price"`
}

type stdOrder struct {
	UserID string    `json:"user_id"`
	Items  []stdItem `json:"items"`
	Total  int64     `json:"total"`
}

func BenchmarkDecodeOrderJSONX(b *testing.B) {
	var r Reader
	b.ReportAllocs()
	b.SetBytes(int64(len(orderJSON)))
	for b.Loop() {
		r.Reset(orderJSON)
		var total int64
		var userLen int
		for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
			switch string(key) {
			case "user_id":
				userLen = len(r.StringBytes())
			case "items":
				for r.ArrayNext() {
					for k, ok := r.ObjectNext(); ok; k, ok = r.ObjectNext() {
						switch string(k) {
						case "price":
							total += r.Int()
						case "name":
							r.StringBytes()
						default:
							r.Skip()
						}
					}
				}
			default:
				r.Skip()
			}
		}
		if r.Finish() != nil || total != 1550000 || userLen != 7 {
			b.Fatal(r.Err())
		}
	}
}

func BenchmarkDecodeOrderStd(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(orderJSON)))
	for b.Loop() {
		var o stdOrder
		if err := json.Unmarshal(orderJSON, &o); err != nil || len(o.Items) != 2 {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeOrderJSONX(b *testing.B) {
	var w Writer
	items := []stdItem{{"laptop", 1500000}, {"mouse", 50000}}
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		w.ObjectStart()
		w.StringField("user_id", "user123")
		w.Key("items")
		w.ArrayStart()
		for _, it := range items {
			w.ObjectStart()
			w.StringField("name", it.Name)
			w.IntField("price", it.Price)
			w.ObjectEnd()
		}
		w.ArrayEnd()
		w.IntField("total", 1550000)
		w.ObjectEnd()
	}
	want, _ := json.Marshal(stdOrder{UserID: "user123", Items: items, Total: 1550000})
	if !bytes.Equal(w.Bytes(), want) {
		b.Fatalf("got %s want %s", w.Bytes(), want)
	}
}

func BenchmarkEncodeOrderStd(b *testing.B) {
	o := stdOrder{UserID: "user123", Items: []stdItem{{"laptop", 1500000}, {"mouse", 50000}}, Total: 1550000}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&o); err != nil {
			b.Fatal(err)
		}
	}
}

// StringUTF8 reads what String reads and tells the strings String had to
// repair (invalid UTF-8, unpaired surrogates) from the valid ones, so that
// two different invalid ids are refused rather than read as one.
func TestStringUTF8(t *testing.T) {
	for in, valid := range map[string]bool{
		`"v"`:              true,
		`"vé"`:             true,
		`"v\u00e9"`:        true,
		`"v\ufffd"`:        true, // U+FFFD itself is a valid character
		"\"v\ufffd\"":      true,
		`"\ud83d\ude00"`:   true, // a surrogate pair
		"\"v\xff\"":        false,
		"\"v\xfe\"":        false,
		"\"v\xff\\n\"":     false, // invalid UTF-8 on the slow path
		"\"a\xc3\"":        false,
		"\"\xed\xa0\x80\"": false, // an encoded surrogate
		`"\ud800"`:         false,
		`"\udc00x"`:        false,
		`"\ud800\u0041"`:   false,
	} {
		var r Reader
		r.Reset([]byte(in))
		s, ok := r.StringUTF8()
		var r2 Reader
		r2.Reset([]byte(in))
		if want := r2.String(); s != want || ok != valid {
			t.Errorf("StringUTF8(%q) = %q, %v; want %q, %v", in, s, ok, want, valid)
		}
	}
	// Each string is judged alone.
	var r Reader
	r.Reset([]byte("[\"\xff\",\"ok\"]"))
	r.ArrayNext()
	if _, ok := r.StringUTF8(); ok {
		t.Fatal("invalid first element read as valid")
	}
	r.ArrayNext()
	if s, ok := r.StringUTF8(); !ok || s != "ok" {
		t.Fatalf("second element = %q, %v", s, ok)
	}
	// A string that cannot be read is not valid.
	r.Reset([]byte(`"unterminated`))
	if _, ok := r.StringUTF8(); ok {
		t.Fatal("an unterminated string read as valid")
	}
}
