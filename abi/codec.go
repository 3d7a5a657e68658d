package abi

import (
	"encoding/binary"
	"errors"
)

// The encodings are sequences of fields:
//
//	u32   a little-endian unsigned 32-bit integer
//	bytes a u32 length followed by that many bytes (str is bytes holding UTF-8)
//	pairs a u32 count followed by count × (str key, str value)
//
// Decoders must ignore bytes after the last field they know, so that later
// versions can append fields. Decoded byte slices alias the input buffer.

// ErrShort is returned when an encoding ends inside a field.
var ErrShort = errors.New("abi: encoding ends inside a field")

// Pair is one key and value (a path parameter or a header).
type Pair struct {
	Key, Value []byte
}

// Request is an HTTP request handed to ExportHTTP.
//
//	str method, str path, str query, str route, pairs params, pairs headers,
//	str consumer, str request_id, str traceparent, bytes body
//
// Header names are lower case; a header with several values appears once per
// value. Route is the matched pattern ("GET /orders/{id}"); Params are the
// pattern's wildcards; Consumer is the authenticated caller or empty.
type Request struct {
	Method, Path, Query, Route []byte
	Params, Headers            []Pair
	Consumer, RequestID        []byte
	TraceParent                []byte
	Body                       []byte
}

// Response is what ExportHTTP hands back.
//
//	u32 status, pairs headers, bytes body
type Response struct {
	Status  uint32
	Headers []Pair
	Body    []byte
}

// Event is an event handed to ExportEvent (CloudEvents 1.0 attributes).
//
//	str id, str source, str type, str time, str datacontenttype,
//	str traceparent, u32 attempt, bytes data
//
// Time is RFC 3339 with nanoseconds. Attempt is 1 on first delivery.
type Event struct {
	ID, Source, Type, Time []byte
	DataContentType        []byte
	TraceParent            []byte
	Attempt                uint32
	Data                   []byte
}

// AppendU32 appends v little-endian.
func AppendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// AppendBytes appends a length-prefixed field.
func AppendBytes(b, v []byte) []byte {
	b = AppendU32(b, uint32(len(v)))
	return append(b, v...)
}

// AppendString appends a length-prefixed string field.
func AppendString(b []byte, v string) []byte {
	b = AppendU32(b, uint32(len(v)))
	return append(b, v...)
}

// AppendPairs appends a pairs field.
func AppendPairs(b []byte, ps []Pair) []byte {
	b = AppendU32(b, uint32(len(ps)))
	for _, p := range ps {
		b = AppendBytes(b, p.Key)
		b = AppendBytes(b, p.Value)
	}
	return b
}

// Append encodes r onto b.
func (r *Request) Append(b []byte) []byte {
	b = AppendBytes(b, r.Method)
	b = AppendBytes(b, r.Path)
	b = AppendBytes(b, r.Query)
	b = AppendBytes(b, r.Route)
	b = AppendPairs(b, r.Params)
	b = AppendPairs(b, r.Headers)
	b = AppendBytes(b, r.Consumer)
	b = AppendBytes(b, r.RequestID)
	b = AppendBytes(b, r.TraceParent)
	return AppendBytes(b, r.Body)
}

// Decode fills r from b, reusing r's pair slices. The result aliases b.
func (r *Request) Decode(b []byte) error {
	d := decoder{b: b}
	r.Method = d.bytes()
	r.Path = d.bytes()
	r.Query = d.bytes()
	r.Route = d.bytes()
	r.Params = d.pairs(r.Params[:0])
	r.Headers = d.pairs(r.Headers[:0])
	r.Consumer = d.bytes()
	r.RequestID = d.bytes()
	r.TraceParent = d.bytes()
	r.Body = d.bytes()
	return d.err
}

// Append encodes r onto b.
func (r *Response) Append(b []byte) []byte {
	b = AppendU32(b, r.Status)
	b = AppendPairs(b, r.Headers)
	return AppendBytes(b, r.Body)
}

// Decode fills r from b, reusing r's header slice. The result aliases b.
func (r *Response) Decode(b []byte) error {
	d := decoder{b: b}
	r.Status = d.u32()
	r.Headers = d.pairs(r.Headers[:0])
	r.Body = d.bytes()
	return d.err
}

// Append encodes e onto b.
func (e *Event) Append(b []byte) []byte {
	b = AppendBytes(b, e.ID)
	b = AppendBytes(b, e.Source)
	b = AppendBytes(b, e.Type)
	b = AppendBytes(b, e.Time)
	b = AppendBytes(b, e.DataContentType)
	b = AppendBytes(b, e.TraceParent)
	b = AppendU32(b, e.Attempt)
	return AppendBytes(b, e.Data)
}

// Decode fills e from b. The result aliases b.
func (e *Event) Decode(b []byte) error {
	d := decoder{b: b}
	e.ID = d.bytes()
	e.Source = d.bytes()
	e.Type = d.bytes()
	e.Time = d.bytes()
	e.DataContentType = d.bytes()
	e.TraceParent = d.bytes()
	e.Attempt = d.u32()
	e.Data = d.bytes()
	return d.err
}

// decoder reads fields; after the first error every read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.err = ErrShort
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = ErrShort
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) pairs(ps []Pair) []Pair {
	n := d.u32()
	// Each pair needs at least 8 bytes; refuse counts the input cannot hold
	// before allocating for them.
	if d.err == nil && uint64(n)*8 > uint64(len(d.b)) {
		d.err = ErrShort
	}
	for i := uint32(0); i < n && d.err == nil; i++ {
		k := d.bytes()
		v := d.bytes()
		if d.err == nil {
			ps = append(ps, Pair{Key: k, Value: v})
		}
	}
	return ps
}
