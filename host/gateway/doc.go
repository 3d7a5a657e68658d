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
// [Policies] add what an operator puts in front of a public API: mounts (a
// path prefix to a service), authentication (API keys, or JWTs checked with
// an HS256 secret or a JWKS file or URL), consumer allow-lists, token-bucket
// rate limits per consumer or client address, and per-route timeouts and
// body caps. A policy attaches to a service, a route or a path prefix;
// [Gateway.SetPolicies] compiles it into the router, which is swapped as a
// whole, all or nothing. [NewServer] builds the http.Server with the
// timeouts of a [ServerConfig].
//
// Every error the gateway writes is an RFC 9457 application/problem+json
// document produced by [WriteProblem], carrying the request id: 401 with
// WWW-Authenticate, 403, 404, 405, 413, 415, 429 with Retry-After and the
// RateLimit-Policy and RateLimit headers, 500, 502, 503, 504.
package gateway
