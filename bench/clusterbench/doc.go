// Package clusterbench measures meshd across nodes through real daemons:
// it starts bin/meshd processes (built from cmd/meshd into a temporary
// directory) with the demo plugins of build/plugins, on loopback, and
// drives their gateways over HTTP.
//
// Its benchmarks (clusterbench_test.go) report:
//
//   - the forwarding overhead: GET /orders/{id} sent to a node that does
//     not run the order service (forwarded over NATS to the node that
//     does) against the same request sent to that node, interleaved in
//     one run from one client;
//   - the saga's throughput and CPU per order on one node and on three
//     (the sum of the meshd processes' user and system CPU from
//     /proc/<pid>/stat, divided by the orders settled).
//
// Every node starts from a copy of one warm compilation cache (a node of
// its own compiles the demo services once per run), as a restarted node
// would. $MESHD_BIN names a prebuilt meshd to run instead of building one.
//
// It is benchmark-only code: nothing in the product imports it. It runs on
// Linux only (it reads /proc) and skips when build/plugins is missing
// (`make plugins`).
package clusterbench
