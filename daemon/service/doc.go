// Package service is the lifecycle of one service version on this node:
// a Service owns its module, its host environment, its key-value store,
// its subscriptions and the service file it was loaded with.
//
// A version is prepared (Builder: Compile, Link, OpenKV; the slow part,
// off the request path), described and checked (Describe: the module's
// declaration against its exports, its grants and its [events]
// settings), subscribed (Subscribe: the previous version's subscriptions
// carry on for the types both declare), activated by the daemon (the
// swap), then started (StartSubscriptions), and finally retired or
// removed: Close drains its in-flight work and closes it.
//
// Route conflicts between services (Conflicts) and the writer that turns
// a guest's WASI stdout and stderr into log lines (LogWriter) belong to a
// service too and live here.
package service
