// Package remote carries meshd's registry and calls between nodes over
// NATS: which node serves which service (a [Directory]: an announcer and a
// watcher on the JetStream key-value bucket [Bucket]), and the calls
// themselves (a [Server] answering for the services this node serves, a
// [Target] sending a call to another node).
//
// # Directory
//
// Every node writes one key of the bucket, its escaped node name, every
// [DefaultHeartbeat] with a per-message TTL ([DefaultTTL]): a JSON
// [Announcement] of the services it serves (service, version, status,
// calls in flight). The bucket keeps one revision per key and places a
// delete marker when a key's TTL lapses, so a node that stops heartbeating
// leaves every watcher's view within the TTL (each watcher also drops a
// node it has not heard from in TTL plus a second, should the marker be
// late). A node that closes its Directory deletes its key at once.
//
// # Calls
//
// A call to service s is one NATS request on the subject
// "meshd.svc.<s>" ([Subject]), to the queue group of the same name: NATS
// hands it to one of the nodes serving s. The request's data is a
// [FrameLen]-byte frame ([FrameVersion], the time left in milliseconds,
// the call depth) followed by the abi.Request encoding; it has no NATS
// headers. The reply of a call that succeeded is the abi.Response
// encoding, with no headers either; when the call failed on the callee's
// node, it is an empty body with the failure's kind ([HeaderFault], a
// fault.Kind's name), a bounded message ([HeaderError]), the node
// ([HeaderNode]) and a Retry-After ([HeaderRetry], milliseconds). No node
// serving s is fault.Unavailable at once (NATS's no-responders status), a
// call that runs past its deadline fault.Timeout, a request or answer
// past the connection's maximum payload fault.TooLarge or fault.Failed.
//
// A [Server] runs the calls of a service on long-lived workers, at most
// [DefaultMaxInFlight] at once (a call past them is answered fault.Busy),
// each ending after 10 s without a call: a worker keeps the stack a guest
// call grew, which a goroutine per call would grow again every time.
package remote
