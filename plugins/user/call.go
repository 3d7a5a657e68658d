package main

import (
	"errors"

	"github.com/meshd/meshd/plugins/internal/svcenv"
)

// hostEnv is env on the real host functions.
type hostEnv struct{ svcenv.Host }

var errNoCalls = errors.New("service-to-service calls need ABI v1.2")

// Get calls GET path?query on service.
func (hostEnv) Get(service, path, query string) (int, []byte, error) {
	return 0, nil, errNoCalls
}

// callFailure is the short reason a profile gives for a call that got no
// answer.
func callFailure(err error) string {
	return "order service unavailable"
}
