// Package meshguest is the test guest of daemon/calls_test.go, built twice
// (guest-caller, guest-callee: `make fixtures`) so that two services with
// routes of their own can call each other. Every route is under
// /<prefix>/:
//
//	GET  /P/call?to=S&method=M&path=/..&retryable=1  calls S and answers 200
//	     {"status":N,"body":"...","code":"..."}: what the call returned
//	GET  /P/cycle?to=S   calls GET /S/cycle?to=P on S (a cycle when S does
//	     the same), answers 200 {"status":N,"code":"..."} of that call
//	GET  /P/sleep?ms=N   sleeps N ms, then 200
//	GET|POST /P/flaky?key=K&fail=N  counts its invocations of K; answers
//	     500 for the first N, then 200
//	GET  /P/count?key=K  {"count":N}
//	POST /P/mode?fail=1  makes /P/maybe answer 500 (fail=0: 200)
//	GET  /P/maybe        counts in "hits", 500 or 200 by the mode
//	GET  /P/spin         loops until its deadline stops it
//	GET  /P/internal     an internal route: calls only
package meshguest

import (
	"errors"
	"strconv"
	"time"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

// Register registers the routes under /prefix/.
func Register(prefix string) {
	p := "/" + prefix
	guest.Handle("GET "+p+"/call", func(w *guest.ResponseWriter, r *guest.Request) {
		req := &guest.CallRequest{Method: r.QueryValue("method"), Path: r.QueryValue("path"),
			Retryable: r.QueryValue("retryable") == "1"}
		resp, err := guest.Call(r.QueryValue("to"), req)
		answer(w, resp, err)
	})
	guest.Handle("GET "+p+"/cycle", func(w *guest.ResponseWriter, r *guest.Request) {
		to := r.QueryValue("to")
		resp, err := guest.Call(to, &guest.CallRequest{Path: "/" + to + "/cycle?to=" + prefix})
		answer(w, resp, err)
	})
	guest.Handle("GET "+p+"/sleep", func(w *guest.ResponseWriter, r *guest.Request) {
		ms, _ := strconv.Atoi(r.QueryValue("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.JSON(200, []byte(`{"slept":true}`))
	})
	flaky := func(w *guest.ResponseWriter, r *guest.Request) {
		n, err := count("n:" + r.QueryValue("key"))
		if err != nil {
			w.Fail(err)
			return
		}
		fail, _ := strconv.Atoi(r.QueryValue("fail"))
		if n <= fail {
			w.JSON(500, []byte(`{"failing":`+strconv.Itoa(n)+`}`))
			return
		}
		w.JSON(200, []byte(`{"ok":`+strconv.Itoa(n)+`}`))
	}
	guest.Handle("GET "+p+"/flaky", flaky)
	guest.Handle("POST "+p+"/flaky", flaky)
	guest.Handle("GET "+p+"/count", func(w *guest.ResponseWriter, r *guest.Request) {
		v, err := guest.KVGet("n:" + r.QueryValue("key"))
		if errors.Is(err, guest.ErrNotFound) {
			v = []byte("0")
		} else if err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, []byte(`{"count":`+string(v)+`}`))
	})
	guest.Handle("POST "+p+"/mode", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := guest.KVSet("broken", []byte(r.QueryValue("fail"))); err != nil {
			w.Fail(err)
			return
		}
		w.JSON(200, []byte(`{}`))
	})
	guest.Handle("GET "+p+"/maybe", func(w *guest.ResponseWriter, r *guest.Request) {
		if _, err := count("n:hits"); err != nil {
			w.Fail(err)
			return
		}
		if v, _ := guest.KVGet("broken"); string(v) == "1" {
			w.JSON(500, []byte(`{"broken":true}`))
			return
		}
		w.JSON(200, []byte(`{"ok":true}`))
	})
	guest.Handle("GET "+p+"/spin", func(w *guest.ResponseWriter, r *guest.Request) {
		for n := 0; ; n++ { // stopped at the call's deadline
			if n < 0 {
				break
			}
		}
		w.JSON(200, nil)
	})
	guest.Handle("GET "+p+"/internal", func(w *guest.ResponseWriter, r *guest.Request) {
		w.JSON(200, []byte(`{"caller":"`+r.CallingService()+`","request_id":"`+r.RequestID+`"}`))
	}, guest.Internal())
}

// count adds one to the counter at key and returns its new value.
func count(key string) (int, error) {
	n := 0
	if v, err := guest.KVGet(key); err == nil {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	return n, guest.KVSet(key, []byte(strconv.Itoa(n)))
}

func answer(w *guest.ResponseWriter, resp *guest.CallResponse, err error) {
	var out jsonx.Writer
	out.ObjectStart()
	if err != nil {
		var ge *guest.Error
		code := "other"
		if errors.As(err, &ge) {
			code = ge.Code.String()
		}
		out.Key("code")
		out.String(code)
		out.Key("error")
		out.String(err.Error())
	} else {
		out.Key("status")
		out.Int(int64(resp.Status))
		out.Key("body")
		out.String(string(resp.Body))
	}
	out.ObjectEnd()
	w.JSON(200, out.Bytes())
}
