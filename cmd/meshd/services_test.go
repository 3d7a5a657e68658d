package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// meshd services lists the daemon's services with their breakers, drains
// and undrains by name, and prints a problem's title and detail with exit
// status 1.
func TestServicesCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		switch r.URL.Path {
		case "/v1/services":
			w.Write([]byte(`{"services":[{"name":"user","version":"abc","status":"UP","breakers":[{"caller":"user","callee":"order","state":"open"}]}]}`))
		case "/v1/services/user/drain":
			w.Write([]byte(`{"service":"user","drained":true,"status":"OUT_OF_SERVICE"}`))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			w.Write([]byte(`{"title":"no such service","detail":"service nosuch is not loaded","status":404}`))
		}
	}))
	defer srv.Close()
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"list"}, 0, "order:open"},
		{[]string{"drain", "user"}, 0, "user drained: OUT_OF_SERVICE"},
		{[]string{"undrain", "nosuch"}, 1, "no such service: service nosuch is not loaded"},
		{[]string{"drain"}, 2, "NAME is required"},
	} {
		var out, errOut bytes.Buffer
		code := run(append(append([]string{"services"}, c.args...), "--admin", srv.URL), &out, &errOut)
		if code != c.code || !strings.Contains(out.String()+errOut.String(), c.out) {
			t.Errorf("services %v: exit %d, out %q, err %q; want %d and %q", c.args, code, out.String(), errOut.String(), c.code, c.out)
		}
	}
	if want := "GET /v1/services,POST /v1/services/user/drain,POST /v1/services/nosuch/undrain"; strings.Join(got, ",") != want {
		t.Errorf("requests %v, want %s", got, want)
	}
}
