package natsd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster makes the embedded server a node of a NATS cluster with
// JetStream clustered: streams and key-value buckets can then keep
// replicas on several nodes (see Server.Replicas).
//
// Every node of a cluster has the same Name, its own Node name, its own
// data directory, and Routes to the others' Listen addresses (listing its
// own address too is harmless: the server skips a route to itself, and one
// Routes list for every node is the simplest configuration). The cluster
// listener follows the client listener's rules (see Auth): routes
// authenticate with User and Password, and a Listen address
// beyond loopback needs TLS (Auth.TLSCert, Auth.TLSKey and Auth.TLSCA,
// which then also verify the certificates of the other nodes) unless
// Auth.Plaintext. A cluster on one machine (Listen and every route on
// loopback) may go without User and Password: any process of the machine
// may then join it as a node, which Start warns of.
type Cluster struct {
	// Name is the cluster's name, the same on every node (DefaultClusterName
	// when empty).
	Name string
	// Listen is the host:port this node accepts routes from the others on
	// ("10.0.0.1:6222"; port 0 picks a free one).
	Listen string
	// Routes are the other nodes' Listen addresses, as nats://host:port,
	// without credentials: User and Password are presented to them.
	Routes []string
	// Node is this node's server name, unique in the cluster and the same
	// across its restarts (JetStream keys its replicas by it). Empty takes
	// Config.Name, then the host name.
	Node string
	// User and Password are what nodes present to each other's cluster
	// listener: the same on every node.
	User     string
	Password string
	// Wait bounds how long Start waits for the cluster's JetStream to be
	// ready (DefaultClusterWait when 0); the context bounds it too.
	Wait time.Duration
}

// DefaultClusterName is the cluster's name when Cluster.Name is empty.
const DefaultClusterName = "meshd"

// DefaultClusterWait is how long Start waits, by default, for a majority
// of the cluster's nodes to elect a JetStream meta leader.
const DefaultClusterWait = 30 * time.Second

// peerGrace is how long Start keeps waiting, once the meta leader is
// known, for the cluster's other known nodes to come up: the cluster size
// Replicas works from is the count of nodes up at the end of it.
const peerGrace = 5 * time.Second

// DefaultReplicas is the replica count Server.Replicas wants by default in
// a cluster: a majority of three survives the loss of one node.
const DefaultReplicas = 3

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// Bounds of Cluster's fields.
const (
	maxRoutes    = 64
	maxNameBytes = 128
	maxURLBytes  = 512
)

// ErrClusterNotReady is wrapped by Start's error when the cluster's
// JetStream did not become ready within Cluster.Wait (or the context).
var ErrClusterNotReady = errors.New("natsd: cluster JetStream not ready")

// nodeName returns the server name of c's node: Cluster.Node, Config.Name,
// or the host name.
func (c *Config) nodeName() (string, error) {
	if c.Cluster.Node != "" {
		return c.Cluster.Node, nil
	}
	if c.Name != "" {
		return c.Name, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("cluster-node: not given and the host name is unknown (%v)", err)
	}
	return h, nil
}

// validName checks a cluster or node name: nats-server refuses spaces.
func validName(s string) bool {
	return s != "" && len(s) <= maxNameBytes && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// validateCluster reports every problem of c.Cluster through bad.
func (c *Config) validateCluster(bad func(field, format string, args ...any)) {
	k := c.Cluster
	a := &c.Auth
	if c.URL != "" {
		bad("cluster-listen", "not with --nats-url: meshd starts no NATS server when it connects to one")
		return
	}
	if k.Name != "" && !validName(k.Name) {
		bad("cluster-name", "%s: at most %d bytes, no spaces or control characters", quote(k.Name), maxNameBytes)
	}
	if k.Node != "" && !validName(k.Node) {
		bad("node", "%s: at most %d bytes, no spaces or control characters", quote(k.Node), maxNameBytes)
	}
	if k.Node != "" && c.Name != "" && k.Node != c.Name {
		bad("node", "the cluster node name %s is not the server name %s", quote(k.Node), quote(c.Name))
	}
	if k.Node == "" && c.Name != "" && !validName(c.Name) {
		bad("node", "%s: at most %d bytes, no spaces or control characters", quote(c.Name), maxNameBytes)
	}
	if k.Wait < 0 {
		bad("cluster-wait", "%s is negative", k.Wait)
	}
	host, err := listenHost(k.Listen)
	if k.Listen == "" {
		bad("cluster-listen", "a cluster node needs the address its routes come in on")
	} else if err != nil {
		bad("cluster-listen", "%v", err)
	}
	switch {
	case k.User == "" && k.Password == "" && err == nil && k.Listen != "" && loopbackCluster(host, k.Routes):
		// A cluster on one machine (a demo, a test): no credentials, with
		// a warning at Start (see Cluster).
	case k.User == "" || k.Password == "":
		bad("cluster-user", "the cluster listener needs credentials beyond loopback: give --cluster-user with --cluster-password-file, the same on every node")
	case len(k.User) > maxUserBytes || strings.ContainsFunc(k.User, unicode.IsControl):
		bad("cluster-user", "%s: at most %d bytes, no control characters", quote(k.User), maxUserBytes)
	case len(k.Password) > maxPasswordBytes:
		bad("cluster-password-file", "the password is longer than %d bytes", maxPasswordBytes)
	case bcryptLike.MatchString(k.Password):
		bad("cluster-password-file", "the password looks like a bcrypt hash: give the password itself")
	}
	if a.TLSCert != "" && a.TLSCA == "" {
		bad("nats-tls-ca", "with --cluster-listen and --nats-tls-cert: nodes verify each other's certificates against it")
	}
	if err == nil && k.Listen != "" && a.TLSCert == "" && !a.Plaintext && !isLoopback(host) {
		bad("cluster-listen", "%s is not a loopback address: the services' events and state would cross the network in clear; give --nats-tls-cert, --nats-tls-key and --nats-tls-ca, or --nats-plaintext to accept that (a private network, a tunnel)", quote(k.Listen))
	}
	if len(k.Routes) > maxRoutes {
		bad("cluster-routes", "%d routes, more than %d", len(k.Routes), maxRoutes)
		return
	}
	for _, r := range k.Routes {
		if _, err := routeURL(r); err != nil {
			bad("cluster-routes", "%v", err)
		}
	}
}

// loopbackCluster reports whether a cluster listener on host with routes
// stays on this machine: host and every route's host are loopback. Such a
// cluster may go without route credentials.
func loopbackCluster(host string, routes []string) bool {
	if !isLoopback(host) {
		return false
	}
	for _, r := range routes {
		u, err := routeURL(r)
		if err != nil || !isLoopback(u.Hostname()) {
			return false
		}
	}
	return true
}

// routeURL parses one of Cluster.Routes. Its errors never repeat a
// password.
func routeURL(r string) (*url.URL, error) {
	if len(r) > maxURLBytes {
		return nil, fmt.Errorf("a route of %d bytes, more than %d", len(r), maxURLBytes)
	}
	u, err := url.Parse(r)
	if err != nil {
		if strings.Contains(r, "@") {
			return nil, errors.New("(unparsable URL): want nats://host:port")
		}
		return nil, fmt.Errorf("%s: want nats://host:port", quote(r))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s carries credentials: give them with --cluster-user and --cluster-password-file", quote(u.Redacted()))
	}
	if u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls" {
		return nil, fmt.Errorf("%s: want nats://host:port", quote(r))
	}
	host, port, err := net.SplitHostPort(u.Host)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("%s: want nats://host:port", quote(r))
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%s: want nats://host:port", quote(r))
	}
	return u, nil
}

// The Raft timeouts of the cluster nodes meshd embeds (our nats-server
// patch 0002). A stream or consumer whose leader's node died takes no
// writes until a follower stands for election: upstream waits 4 to 9 s
// after the last heartbeat (every 1 s), made for wide-area links, and a
// request writing to such a stream on a surviving node waited that long.
// meshd's nodes share a LAN: 3 to 5 s. The heartbeat stays at 1 s, so a
// follower stands after three to five missed heartbeats: a node stalled
// for two seconds (a loaded machine, a collection) does not start
// elections. (2 to 4 s with a 500 ms heartbeat was tried: in-process test
// clusters under the race detector on a loaded machine then failed to
// create a bucket within a minute.)
const (
	RaftElectionMin = 3 * time.Second
	RaftElectionMax = 5 * time.Second
	RaftHeartbeat   = time.Second
)

// setRaftTimeouts sets the Raft timeouts above, once per process and
// before its first cluster node starts: they are the process's.
var setRaftTimeouts = sync.OnceValue(func() error {
	return server.SetRaftTimeouts(RaftElectionMin, RaftElectionMax, RaftHeartbeat)
})

// clusterOptions makes opts a cluster node's: its cluster listener with
// the route credentials and TLS, its routes (which present the same
// credentials), and its server name.
func clusterOptions(opts *server.Options, cfg Config) error {
	k := cfg.Cluster
	node, err := cfg.nodeName()
	if err != nil {
		return fmt.Errorf("natsd: %w", err)
	}
	if !validName(node) {
		return fmt.Errorf("natsd: node: host name %s is not a server name: give --node", quote(node))
	}
	opts.ServerName = node
	host, port, _ := net.SplitHostPort(k.Listen) // checked by Validate
	p, _ := strconv.Atoi(port)
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts.Cluster = server.ClusterOpts{
		Name:     cmp.Or(k.Name, DefaultClusterName),
		Host:     host,
		Port:     p,
		Username: k.User,
		Password: k.Password,
		// Without a client port of its own (Config.Listen), the node has
		// no client URL worth telling the other nodes' clients about.
		NoAdvertise: cfg.Listen == "",
	}
	for _, r := range k.Routes {
		u, err := routeURL(r) // checked by Validate
		if err != nil {
			return fmt.Errorf("natsd: cluster-routes: %w", err)
		}
		if k.User != "" {
			u.User = url.UserPassword(k.User, k.Password)
		}
		opts.Routes = append(opts.Routes, u)
	}
	if a := cfg.Auth; a.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: a.TLSCert, KeyFile: a.TLSKey, CaFile: a.TLSCA, Verify: true})
		if err != nil {
			return fmt.Errorf("natsd: cluster tls: %w", err)
		}
		if tc == nil { // GenTLSConfig returns nil, nil for an empty CA file
			return fmt.Errorf("natsd: nats-tls-ca %s: empty", quote(a.TLSCA))
		}
		// The CA verifies both ends: the node that dials a route checks
		// the certificate of the one it reaches (nats-server's own
		// configuration parser does the same).
		tc.RootCAs = tc.ClientCAs
		opts.Cluster.TLSConfig = tc
		opts.Cluster.TLSTimeout = 2
	}
	return nil
}

// clusterState is what Start reads of the cluster while it waits.
type clusterState struct {
	leader  string // the meta leader's server name; "" when none
	current bool   // this node's copy of the meta state is caught up
	size    int    // nodes the meta group knows (or expects)
	up      int    // of them, the ones up (this node included)
	quorum  int    // nodes needed to elect a meta leader
	routes  int    // other servers this one has a route to
}

func readCluster(ns *server.Server) clusterState {
	var st clusterState
	if jsi, err := ns.Jsz(&server.JSzOptions{}); err == nil && jsi.Meta != nil {
		m := jsi.Meta
		st.leader, st.size, st.quorum = m.Leader, m.Size, m.QuorumNeeded
		st.up = 1
		for _, p := range m.Replicas {
			if p != nil && !p.Offline && p.Name != "" && p.Name != ns.Name() {
				st.up++
			}
		}
		if m.Leader != "" && m.Leader != ns.Name() && !slices.ContainsFunc(m.Replicas, func(p *server.PeerInfo) bool { return p != nil && p.Name == m.Leader }) {
			st.up++ // a leader is up, and not always among Replicas
		}
	}
	st.current = ns.JetStreamIsCurrent()
	if rz, err := ns.Routez(&server.RoutezOptions{}); err == nil {
		ids := map[string]struct{}{}
		for _, r := range rz.Routes {
			ids[r.RemoteID] = struct{}{}
		}
		st.routes = len(ids)
	}
	return st
}

// waitCluster waits until the cluster's JetStream has a meta leader this
// node is caught up with, then, for at most peerGrace more, until every
// node the meta group knows, and every node this one has a route to, is
// up in the meta group. It returns how many nodes are up. When
// no leader comes before Cluster.Wait (or ctx) ends, its error names what
// is missing: a node without a majority of the cluster never becomes
// usable (no stream can be created or written), and saying so now beats a
// store error later.
func waitCluster(ctx context.Context, ns *server.Server, cfg Config) (int, error) {
	wait := cfg.Cluster.Wait
	if wait == 0 {
		wait = DefaultClusterWait
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var leaderAt time.Time
	for {
		st := readCluster(ns)
		if st.leader != "" && st.current {
			if leaderAt.IsZero() {
				leaderAt = time.Now()
			}
			// The meta group's size can lag behind the nodes up (a
			// leader elected by two of three counts two until the third
			// is added): the nodes this one has routes to are up too.
			if st.up >= max(st.size, st.routes+1) || time.Since(leaderAt) >= peerGrace || !time.Now().Before(deadline) {
				return max(st.up, 1), nil
			}
		} else if !leaderAt.IsZero() {
			leaderAt = time.Time{} // the leader went away: wait for the next
		}
		if leaderAt.IsZero() && !time.Now().Before(deadline) {
			return 0, notReady(st, cfg, wait, ctx.Err())
		}
		select {
		case <-ctx.Done():
			if leaderAt.IsZero() {
				return 0, notReady(readCluster(ns), cfg, wait, ctx.Err())
			}
			return max(st.up, 1), nil
		case <-tick.C:
		}
	}
}

func notReady(st clusterState, cfg Config, wait time.Duration, ctxErr error) error {
	k := cfg.Cluster
	routes := make([]string, len(k.Routes))
	for i, r := range k.Routes {
		routes[i] = quote(r) // routeURL refused any with credentials
	}
	why := fmt.Sprintf("no JetStream meta leader after %s", wait)
	if ctxErr != nil {
		why = fmt.Sprintf("no JetStream meta leader before the start was cancelled (%v)", ctxErr)
	} else if st.leader != "" {
		why = fmt.Sprintf("this node has not caught up with meta leader %s after %s", quote(st.leader), wait)
	}
	return fmt.Errorf("%w: cluster %s, node %s: %s: routes up to %d other node(s) (configured: [%s]); a leader needs %d of the cluster's %d node(s) up: start the others, or check --cluster-routes, --cluster-user and the password on each",
		ErrClusterNotReady, quote(cmp.Or(k.Name, DefaultClusterName)), quote(nodeFor(cfg)), why, st.routes, strings.Join(routes, ", "), max(st.quorum, 1), max(st.size, 1))
}

// nodeFor returns the node name for a message.
func nodeFor(cfg Config) string {
	n, _ := cfg.nodeName()
	return n
}

// ClusterSize is the number of nodes of the cluster that were up when Start
// returned (this one included): 1 for an embedded server alone, 0 when
// the server is external (its size is not known here; see Replicas).
func (s *Server) ClusterSize() int { return s.size }

// Clustered reports whether the server is a node of a NATS cluster: the
// embedded server with Config.Cluster, or the external server Start
// connected to when it names a cluster.
func (s *Server) Clustered() bool { return s.clustered }

// Replicas is the replica count to create streams and buckets with when
// want is asked for.
//
// With the embedded server: want (DefaultReplicas in a cluster, 1
// otherwise, when want is 0 or less), at most ClusterSize, since JetStream
// refuses to place more replicas than it has nodes up.
//
// Against an external server: want as asked, when more than 0 (the
// operator knows that cluster, and its server refuses a count it cannot
// place); else the most replicas, up to DefaultReplicas, its JetStream
// placed at start (1 for a standalone server, or when it could not be
// told: see Config.Replicas).
func (s *Server) Replicas(want int) int {
	if s.ns == nil {
		if want > 0 {
			return min(want, MaxReplicas)
		}
		return max(1, s.placeable)
	}
	if want <= 0 {
		want = 1
		if s.clustered {
			want = DefaultReplicas
		}
	}
	want = min(want, MaxReplicas)
	return max(1, min(want, s.size))
}

// clusterURL is the address the cluster listener of ns took, as a route
// URL, or "" when it has none.
func clusterURL(ns *server.Server) string {
	a := ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// ClusterURL returns the route URL of this node's cluster listener (the
// port it took when Cluster.Listen asked for port 0), or "" when it is not
// a cluster node.
func (s *Server) ClusterURL() string {
	if s.ns == nil || !s.clustered {
		return ""
	}
	return clusterURL(s.ns)
}
