package config

import (
	"strings"
	"testing"
	"time"
)

func TestEventsAdmissionKeys(t *testing.T) {
	for file, want := range map[string]string{
		"[events]\nadmission_lag = \"-1s\"\n":                           "events.admission_lag: -1s: must be between 0 and 1h0m0s",
		"[events]\nadmission_lag = \"2h\"\n":                            "events.admission_lag: 2h0m0s: must be between",
		"[events]\nadmission_lag = \"0s\"\n":                            "events.admission_lag: 0: must be positive",
		"[events]\nadmission_lag = \"soon\"\n":                          "admission_lag",
		"[events]\nadmission_events = -3\n":                             "events.admission_events: -3: must not be negative",
		"[events]\nadmission_events = 0\n":                              "events.admission_events: 0: must be at least 1",
		"[events]\nadmission = false\nadmission_lag = \"1s\"\n":         "events.admission_lag: has no effect with events.admission = false",
		"[events]\nadmission = false\nadmission_events = 5\n":           "events.admission_events: has no effect",
		"[events]\nadmission_lag = \"500ms\"\nadmission_events = 100\n": "",
		"[events]\nadmission = false\n":                                 "",
	} {
		_, err := ParseService("svc.toml", []byte(file))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", file, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v, want one containing %q", file, err, want)
		}
	}
}

func TestEventsAdmissionValues(t *testing.T) {
	s, err := ParseService("svc.toml", []byte("[events]\nadmission_lag = \"750ms\"\nadmission_events = 42\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e := s.Events; e.AdmissionLag.Duration != 750*time.Millisecond || e.AdmissionEvents != 42 || !e.AdmissionOn() {
		t.Fatalf("events %+v: want lag 750ms, 42 events, admission on", e)
	}
	s, err = ParseService("svc.toml", []byte("[events]\nadmission = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Events.AdmissionOn() {
		t.Fatal("admission = false: AdmissionOn is true")
	}
	s, err = ParseService("svc.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Events.AdmissionOn() {
		t.Fatal("no [events]: AdmissionOn is false")
	}
}

func TestEventsOutbox(t *testing.T) {
	if _, err := ParseService("svc.toml", []byte("[events]\noutbox = true\n")); err == nil ||
		!strings.Contains(err.Error(), "events.outbox: needs grants.kv = true") {
		t.Errorf("outbox without a store: error %v, want events.outbox: needs grants.kv = true", err)
	}
	s, err := ParseService("svc.toml", []byte("[grants]\nkv = true\n\n[events]\noutbox = true\n"))
	if err != nil || !s.Events.Outbox {
		t.Fatalf("outbox with a store = %+v, %v; want it on", s, err)
	}
}
