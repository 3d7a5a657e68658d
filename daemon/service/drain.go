package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/host/registry"
)

// DrainResult is the answer of POST /v1/services/{name}/drain and
// /undrain.
type DrainResult struct {
	Service string          `json:"service"`
	Drained bool            `json:"drained"`
	Status  registry.Status `json:"status"` // the service's status after the change
}

// DrainHandler serves POST /v1/services/{name}/drain (drain true) and
// /v1/services/{name}/undrain (false) on the admin API: the service's
// instances on this node go OUT_OF_SERVICE (the gateway answers its routes
// 503 with Retry-After, calls to it fail fast with unavailable, its events
// are still handled) or back to their own status. Both are idempotent. An
// unknown service is 404.
func DrainHandler(reg *registry.Registry, drain bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !abi.ValidServiceName(name) {
			admin.Problem(w, http.StatusNotFound, "no such service", fmt.Sprintf("%s is not a service name", abi.Excerpt(name)))
			return
		}
		if err := reg.SetDrained(name, drain); err != nil {
			if errors.Is(err, registry.ErrNotFound) {
				admin.Problem(w, http.StatusNotFound, "no such service", "service "+name+" is not loaded")
				return
			}
			admin.WriteError(w, err)
			return
		}
		st, _ := reg.Status(name)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(DrainResult{Service: name, Drained: drain, Status: st})
	})
}
