// Package svcenv is what the demo plugins (order, payment, user) need from the
// host, as an interface their logic takes so that tests can substitute a
// fake (svcenvtest), and its implementation on the guest SDK.
package svcenv

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

// Env is what a service needs from the host.
type Env interface {
	KVGet(key string) ([]byte, error) // guest.ErrNotFound when absent
	KVSet(key string, value []byte) error
	Publish(eventType string, data []byte) error
	PublishDelayed(eventType string, data []byte, delay time.Duration) error
	Config(key string) (string, error) // guest.ErrNotFound when absent
	Log(level guest.Level, msg string)
	Now() time.Time
	NewID() string
}

// Host is Env on the real host functions.
type Host struct{}

func (Host) KVGet(key string) ([]byte, error)      { return guest.KVGet(key) }
func (Host) KVSet(key string, value []byte) error  { return guest.KVSet(key, value) }
func (Host) Publish(typ string, data []byte) error { return guest.Publish(typ, data) }
func (Host) PublishDelayed(typ string, data []byte, d time.Duration) error {
	return guest.PublishDelayed(typ, data, d)
}
func (Host) Config(key string) (string, error) { return guest.Config(key) }
func (Host) Log(level guest.Level, msg string) { guest.Log(level, msg) }
func (Host) Now() time.Time                    { return time.Now() }
func (Host) NewID() string                     { return guest.NewUUID() }

// Publish publishes an event, saying which one in its error.
func Publish(e interface {
	Publish(eventType string, data []byte) error
}, typ string, data []byte) error {
	if err := e.Publish(typ, data); err != nil {
		return errors.New("publishing " + typ + ": " + err.Error())
	}
	return nil
}

// Fields reads the named string fields of a flat JSON object (events'
// data), in the order of names; a field that is absent or not a string is
// "". (A slice, not a map: in a Go guest hashing each name costs more than
// comparing a few.)
func Fields(data []byte, names ...string) ([]string, error) {
	out := make([]string, len(names))
	var r jsonx.Reader
	r.Reset(data)
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		if i := slices.Index(names, string(key)); i >= 0 && r.Kind() == jsonx.String {
			out[i] = r.String()
		} else {
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// TimestampLayout is RFC 3339 with nine fractional digits: in UTC it is
// fixed width, so timestamps sort as strings.
const TimestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Timestamp formats t in UTC with TimestampLayout. It is what
// t.UTC().Format(TimestampLayout) gives, written out by hand: in a Go guest
// compiled to Wasm the general formatter was a good part of taking an order.
func Timestamp(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(TimestampLayout)
	}
	hour, minute, sec := t.Clock()
	var b [30]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	b[4] = '-'
	put(5, 2, int(month))
	b[7] = '-'
	put(8, 2, day)
	b[10] = 'T'
	put(11, 2, hour)
	b[13] = ':'
	put(14, 2, minute)
	b[16] = ':'
	put(17, 2, sec)
	b[19] = '.'
	put(20, 9, t.Nanosecond())
	b[29] = 'Z'
	return string(b[:])
}

// StringField reads a field that must be a string; null reads as absent.
// valid is false when the string holds invalid UTF-8, bad when the field
// is not a string (see CheckText).
func StringField(r *jsonx.Reader) (s string, valid, bad bool) {
	switch r.Kind() {
	case jsonx.String:
		s, valid = r.StringUTF8()
		return s, valid, false
	case jsonx.Null:
		r.Skip()
		return "", true, false
	}
	r.Skip()
	return "", true, true
}

// CheckText validates a required string field, or returns why not.
func CheckText(field, s string, bad, valid bool, max int) string {
	switch {
	case bad:
		return field + " must be a string"
	case !valid:
		// Read as U+FFFD, "v\xff" and "v\xfe" would be one value.
		return field + " must be valid UTF-8 (no invalid bytes, no unpaired surrogate escapes)"
	case s == "":
		return field + " is required"
	case strings.TrimSpace(s) == "":
		return field + " must not be blank"
	case len(s) > max:
		return field + " is longer than " + strconv.Itoa(max) + " bytes"
	}
	return ""
}
