// Command guest-caller is a test guest of daemon/calls_test.go (see
// daemon/testdata/meshguest); `make fixtures` builds it into
// daemon/testdata/guest-caller.wasm. Beside meshguest's routes it serves
//
//	GET /caller/loop?to=S&path=/..&n=N  calls GET path on S N times (at
//	     most 10000) in one invocation and answers 200
//	     {"ok":K,"failed":F,"code":"..."}: K calls answered 200, F did not
//	     (code: the last failure's error code, read with guest.CodeOf, or
//	     with errors.As when the query has as=1; or its status as
//	     "status N"); the caller of daemon/calls_bench_test.go
package main

import (
	"errors"
	"strconv"

	"github.com/meshd/meshd/daemon/testdata/meshguest"
	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

const maxLoop = 10000

func init() {
	meshguest.Register("caller")
	guest.Handle("GET /caller/loop", func(w *guest.ResponseWriter, r *guest.Request) {
		to := r.QueryValue("to")
		n, _ := strconv.Atoi(r.QueryValue("n"))
		n = min(max(n, 0), maxLoop)
		as := r.QueryValue("as") == "1"
		req := &guest.CallRequest{Method: "GET", Path: r.QueryValue("path")}
		ok, failed, code := 0, 0, ""
		for range n {
			resp, err := guest.Call(to, req)
			switch {
			case err != nil && as:
				failed++
				code = "other"
				var ge *guest.Error
				if errors.As(err, &ge) {
					code = ge.Code.String()
				}
			case err != nil:
				failed++
				code = guest.CodeOf(err).String()
			case resp.Status != 200:
				failed++
				code = "status " + strconv.Itoa(int(resp.Status))
			default:
				ok++
			}
			if resp != nil {
				resp.Release() // the next call reuses it
			}
		}
		var out jsonx.Writer
		out.ObjectStart()
		out.Key("ok")
		out.Int(int64(ok))
		out.Key("failed")
		out.Int(int64(failed))
		out.Key("code")
		out.String(code)
		out.ObjectEnd()
		w.JSON(200, out.Bytes())
	})
}

func main() {}
