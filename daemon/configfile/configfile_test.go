package configfile

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshd/meshd/host/gateway"
)

func TestApplyAllOrNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.toml")
	if err := os.WriteFile(path, []byte("[[mount]]\nprefix = \"/api\"\nservice = \"order\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var applied []gateway.Policies
	refuse := false
	var observed []error
	r := New(path, func(p gateway.Policies) error {
		if refuse {
			return errors.New("gateway says no")
		}
		applied = append(applied, p)
		return nil
	}, func(err error) { observed = append(observed, err) }, slog.New(slog.DiscardHandler))

	r.Start()
	if st := r.Status(); st.Error != "" || st.AppliedAt.IsZero() || len(applied) != 1 || len(applied[0].Mounts) != 1 {
		t.Fatalf("after Start: %+v, applied %+v", st, applied)
	}
	at := r.Status().AppliedAt

	// A file with a problem: nothing applied, the reason kept.
	if err := r.Changed([]byte("http = 5\n")); err == nil {
		t.Fatal("a bad file was applied")
	}
	if st := r.Status(); st.Error == "" || !st.AppliedAt.Equal(at) || len(applied) != 1 {
		t.Fatalf("after a bad file: %+v, %d applied", st, len(applied))
	}
	// Policies the gateway refuses: the same.
	refuse = true
	if err := r.Reload(); err == nil || r.Status().Error == "" {
		t.Fatalf("refused policies: %v %+v", err, r.Status())
	}
	// A good one clears the error.
	refuse = false
	if err := r.Changed([]byte("")); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Error != "" || len(applied) != 2 || len(applied[1].Mounts) != 0 {
		t.Fatalf("after a good file: %+v, applied %+v", st, applied)
	}
	if len(observed) != 3 || observed[0] == nil || observed[1] == nil || observed[2] != nil {
		t.Fatalf("observed %v, want [bad, refused, ok]", observed)
	}

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/config", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.File != path || st.AppliedAt.IsZero() {
		t.Fatalf("GET /v1/config: %s (%v)", rec.Body, err)
	}
}

func TestNoFileDoesNothing(t *testing.T) {
	r := New("", func(gateway.Policies) error { t.Fatal("applied"); return nil }, nil, slog.New(slog.DiscardHandler))
	r.Start()
	if err := r.Reload(); err != nil || r.Status() != (Status{}) {
		t.Fatalf("%v %+v", err, r.Status())
	}
}
