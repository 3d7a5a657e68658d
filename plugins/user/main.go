// Command user is the user service, a meshd plugin. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o user.wasm ./plugins/user
//
// It keeps users in its own key-value store and serves:
//
//	POST /users        {"id": "kim", "name": "Kim"} creates the user with
//	                   that id (201, Location: /users/kim) or updates it
//	                   (200); the answer is the user as stored.
//	GET  /users/{id}   the user's profile: the user and their recent orders,
//	                   which it asks the order service for with a
//	                   service-to-service call (GET /users/{id}/orders).
//
// Fallback when the order service cannot answer: degrade. The user record
// is this service's own, so the profile is still answered 200 with the user
// and "orders": null and "orders_error" saying why in a few fixed words
// ("order service unavailable", "order service timed out", "call to the
// order service not granted", ...). A client tells a user without orders
// ("orders": []) from a profile whose orders could not be fetched
// ("orders": null). Failing the whole profile (503) would make the user
// service only as available as the order service for data it owns, and
// refusing fast would give the client nothing at all; a partial answer
// that says what is missing is the more useful one. The call's deadline,
// retries (GET is idempotent) and circuit breaker are the host's: the
// call ends before the profile's own deadline (by default after 2 s, with
// the invocation's 5 s), so a hung order service still leaves time to
// answer the degraded profile, and while the breaker is open the profile
// degrades at once, without waiting on the order service. Every other
// failure of the profile (the user's own store) is a 5xx as in the other
// services. The service file grants kv and calls = ["order"].
package main

import (
	"github.com/meshd/meshd/guest"
)

func init() {
	guest.Declare("user", "1.0.0")
	guest.Handle("POST /users", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := putUser(svc, w, r.Body); err != nil {
			w.Fail(err)
		}
	})
	guest.Handle("GET /users/{id}", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := getProfile(svc, w, r.PathValue("id")); err != nil {
			w.Fail(err)
		}
	})
}

// main is not called for a reactor module's calls; registration is in init.
func main() {}

// svc is the service's host; tests substitute a fake.
var svc env = hostEnv{}
