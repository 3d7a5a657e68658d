// Package cluster makes a meshd node one of a mesh of nodes on a NATS
// cluster (host/remote wired to the daemon's registry, gateway and
// calls).
//
// A Node, started once NATS runs:
//   - answers calls from other nodes for every service this node serves
//     UP (remote.Server), each by the local dispatch alone: the route the
//     call's method and path match (internal routes included), then the
//     dispatcher's InvokeCall; a call that came from another node is never
//     forwarded again;
//   - announces those services (version, status, load, public routes) and
//     watches the other nodes' announcements (remote.Directory), keeping
//     the answering subscriptions in step with the registry;
//   - gives the daemon's calls the other nodes as targets (Targets) when
//     this node has no UP instance of a callee;
//   - adds the public routes other nodes announce to the gateway's route
//     set (Routes) for the services this node does not serve: a local
//     service wins every route, and a remote route conflicting with a
//     local one (or an earlier remote one) is left out, logged once.
//
// The gateway's Invoker (Invoker) serves a route of a service this node
// does not run by forwarding it through the daemon's mesh client, caller
// "gateway", so that the deadlines, retries (safe methods only),
// breakers and 503 answers of calls apply; the request keeps the
// consumer the gateway authenticated.
package cluster
