package traceparent

import "testing"

func TestValidAndTraceID(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for s, ok := range map[string]bool{
		good: true,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": false, // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": false, // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01": false, // zero parent id
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": false, // version
		good[:54]: false,
		"":        false,
	} {
		if Valid(s) != ok {
			t.Errorf("Valid(%q) = %v, want %v", s, !ok, ok)
		}
		want := ""
		if ok {
			want = s[3:35]
		}
		if got := TraceID(s); got != want {
			t.Errorf("TraceID(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestNewIsValidAndFresh(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tp := New()
		if !Valid(tp) || len(tp) != Len {
			t.Fatalf("New() = %q, not a valid traceparent", tp)
		}
		if seen[tp] {
			t.Fatalf("New() repeated %q", tp)
		}
		seen[tp] = true
	}
}
