// Package metrics holds every Prometheus metric meshd exposes, on a
// registry of its own (never the global default), with the Go and process
// collectors and meshd_build_info.
//
// The rest of the daemon reports through small methods (Request, Invoked,
// Loaded, Published, Delivered, KV...) and hands in sources read at scrape
// time (instance pools, consumer lag), so nothing is sampled in the
// background. docs/metrics.md lists every metric and what it is for.
//
// Labels are bounded: service, route pattern, method, code, topic (event
// type), entry point and result — never request, event or instance ids.
package metrics
