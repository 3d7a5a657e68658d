package svcenv

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Timestamp writes what the general formatter writes, for any instant and
// zone, including the edges of a four-digit year.
func TestTimestampIsFormat(t *testing.T) {
	zone := time.FixedZone("x", -5*3600-30*60)
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 11, 25, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, zone), // another day in UTC
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		times = append(times, time.Unix(r.Int64N(400*365*24*3600)-100*365*24*3600, r.Int64N(1e9)).In(zone))
	}
	for _, tm := range times {
		if got, want := Timestamp(tm), tm.UTC().Format(TimestampLayout); got != want {
			t.Fatalf("Timestamp(%v) = %q, want %q", tm, got, want)
		}
	}
}

// Fields returns the named string fields in the order asked, "" for one
// absent or not a string, and an error for data that is not JSON.
func TestFields(t *testing.T) {
	f, err := Fields([]byte(`{"b":"2","n":3,"a":"1\u00e9","x":{"a":"nested"},"s":null}`), "a", "b", "n", "missing", "s")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1é", "2", "", "", ""}; !slices.Equal(f, want) {
		t.Fatalf("%q, want %q", f, want)
	}
	if _, err := Fields([]byte(`{"a":"1"`), "a"); err == nil {
		t.Fatal("truncated JSON read without an error")
	}
}
