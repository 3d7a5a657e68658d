// Command guest-density is the Go service of bench/density; `make
// fixtures` builds it into bench/density/testdata/guest-density.wasm.
//
// It serves GET /dsvc-QqZzXx/items/{id}, answering 200
// {"svc":"dsvc-QqZzXx","id":"<id>"}, and GET /dsvc-QqZzXx/hold, which
// answers the same after holding its instance for 10 ms (a sleep), so
// that concurrent requests need as many instances. A service's routes are what its
// module declares from its init (guest.Handle), not something its service
// file can change, so the density run makes its many services from this
// one build by replacing the marker QqZzXx, wherever the module's data
// holds it, with six other characters of the same length: one build, as
// many distinct modules (distinct bytes, distinct routes) as wanted.
package main

import (
	"time"

	"github.com/meshd/meshd/guest"
)

// svc holds the marker; the route and the answer are built from it at
// compile time, so the module's data holds it whole.
const svc = "dsvc-QqZzXx"

func init() {
	guest.Handle("GET /"+svc+"/items/{id}", func(w *guest.ResponseWriter, r *guest.Request) {
		j := w.JSONWriter()
		j.ObjectStart()
		j.StringField("svc", svc)
		j.StringField("id", r.PathValue("id"))
		j.ObjectEnd()
		w.JSON(200, j.Bytes())
	})
	guest.Handle("GET /"+svc+"/hold", func(w *guest.ResponseWriter, r *guest.Request) {
		time.Sleep(10 * time.Millisecond)
		j := w.JSONWriter()
		j.ObjectStart()
		j.StringField("svc", svc)
		j.ObjectEnd()
		w.JSON(200, j.Bytes())
	})
}

func main() {}
