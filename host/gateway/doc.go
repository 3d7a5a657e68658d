// Package gateway is meshd's HTTP ingress.
//
// A Gateway routes requests to services by the routes the services declare
// (a method and a Go 1.22 net/http path pattern). SetRoutes builds a new,
// immutable [http.ServeMux] from the whole route table and swaps it in
// atomically, so a reload never drops or half-routes a request.
//
// For each matched request the gateway assigns a request id, carries or
// starts a W3C trace context, reads and checks the body (size cap, JSON
// content rules), encodes the request as an [abi.Request] and hands it to an
// [Invoker] under a deadline. The [abi.Response] it gets back is written to
// the client.
//
// Every error the gateway writes is an RFC 9457 application/problem+json
// document produced by [WriteProblem], carrying the request id.
package gateway
