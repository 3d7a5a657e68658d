package gateway

import (
	"net/http"
	"sync"
)

// observer wraps the ResponseWriter when Config.Observe is set: it records
// the status written and lets the route handler note the service, route
// and consumer.
type observer struct {
	http.ResponseWriter
	status   int
	service  string
	route    string
	consumer string
}

var observers = sync.Pool{New: func() any { return new(observer) }}

func getObserver(w http.ResponseWriter) *observer {
	o := observers.Get().(*observer)
	o.ResponseWriter = w
	return o
}

func putObserver(o *observer) {
	*o = observer{}
	observers.Put(o)
}

func (o *observer) WriteHeader(code int) {
	if o.status == 0 && code >= 200 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observer) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (o *observer) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (o *observer) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		if o.status == 0 {
			o.status = http.StatusOK
		}
		f.Flush()
	}
}

// noteRoute records the matched route on w when it is an observer.
func noteRoute(w http.ResponseWriter, service, route string) {
	if o, ok := w.(*observer); ok {
		o.service, o.route = service, route
	}
}

// noteConsumer records the authenticated consumer on w when it is an
// observer.
func noteConsumer(w http.ResponseWriter, consumer string) {
	if o, ok := w.(*observer); ok {
		o.consumer = consumer
	}
}
