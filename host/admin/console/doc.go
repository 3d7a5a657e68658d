// Package console is meshd's operator console: one web page, served by the
// admin listener at "/", that shows the mesh live, and the one data
// endpoint it needs that the admin API does not already serve.
//
//	GET /              the page (HTML)
//	GET /console/...   its script and style sheet
//	GET /v1/console    request rate, error rate and p50/p99 latency per
//	                   route over the last minutes; event consumers with
//	                   lag and redeliveries; module loads and reloads
//
// The page reads everything else from the admin API it is served by
// (/v1/services, /v1/config, /v1/events/dlq, /v1/events/dlq/redrive), by
// short polling. It is embedded in the binary (go:embed): no build step,
// no library, no request to another origin (its Content-Security-Policy
// forbids them), and it needs the same token, Host and Origin as the rest
// of the admin API because it is mounted behind the same checks.
//
// The per-route figures come from a sampler: every Config.Interval it
// gathers the Prometheus registry it is handed (the gateway's
// meshd_gateway_requests_total and meshd_gateway_request_duration_seconds)
// into a bounded ring covering Config.Window, and /v1/console derives rates
// and quantiles from the differences between samples, as Prometheus's
// rate() and histogram_quantile() would. The ring holds at most
// Config.MaxRoutes routes per sample.
package console
