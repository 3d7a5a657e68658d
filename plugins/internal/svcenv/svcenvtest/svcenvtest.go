// Package svcenvtest is an in-memory svcenv.Env and a response recorder
// for the demo plugins' tests.
package svcenvtest

import (
	"strconv"
	"time"

	"github.com/meshd/meshd/guest"
)

// Fake is an in-memory host. The zero value is not ready: use New.
type Fake struct {
	Settings  map[string]string // what Config answers
	KV        map[string][]byte
	Published []string // "TYPE data", or "TYPE after DELAY data"
	Logs      []string // "LEVEL msg"
	FailSet   error    // KVSet fails with it
	FailPub   error    // Publish and PublishDelayed fail with it
	FailDelay error    // PublishDelayed fails with it

	idPrefix string
	ids      int
}

// New returns an empty Fake whose NewID returns idPrefix + "1", "2", ...
func New(idPrefix string) *Fake {
	return &Fake{KV: map[string][]byte{}, idPrefix: idPrefix}
}

func (f *Fake) KVGet(key string) ([]byte, error) {
	v, ok := f.KV[key]
	if !ok {
		return nil, guest.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (f *Fake) KVSet(key string, value []byte) error {
	if f.FailSet != nil {
		return f.FailSet
	}
	f.KV[key] = append([]byte(nil), value...)
	return nil
}

func (f *Fake) Publish(typ string, data []byte) error {
	if f.FailPub != nil {
		return f.FailPub
	}
	f.Published = append(f.Published, typ+" "+string(data))
	return nil
}

func (f *Fake) PublishDelayed(typ string, data []byte, d time.Duration) error {
	if f.FailPub != nil {
		return f.FailPub
	}
	if f.FailDelay != nil {
		return f.FailDelay
	}
	f.Published = append(f.Published, typ+" after "+d.String()+" "+string(data))
	return nil
}

func (f *Fake) Config(key string) (string, error) {
	if v, ok := f.Settings[key]; ok {
		return v, nil
	}
	return "", guest.ErrNotFound
}

func (f *Fake) Log(level guest.Level, msg string) { f.Logs = append(f.Logs, level.String()+" "+msg) }

// Now is a fixed time: 2026-01-02T03:04:05Z.
func (f *Fake) Now() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// IDsIssued is how many times NewID was called.
func (f *Fake) IDsIssued() int { return f.ids }

// ResetIDs makes NewID start again from 1 (benchmarks reuse one Fake).
func (f *Fake) ResetIDs() { f.ids = 0 }

func (f *Fake) NewID() string {
	f.ids++
	return f.idPrefix + strconv.Itoa(f.ids)
}

// Recorder is a response writer that keeps what it was told.
type Recorder struct {
	Status  int
	Headers map[string]string
	Body    []byte
	Title   string
	Detail  string
	Errs    []string
}

func (r *Recorder) SetHeader(name, value string) {
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	r.Headers[name] = value
}

func (r *Recorder) JSON(status int, body []byte) {
	r.Status, r.Body = status, append([]byte(nil), body...)
}

func (r *Recorder) Problem(status int, title, detail string, errs ...string) {
	r.Status, r.Title, r.Detail, r.Errs = status, title, detail, errs
}
