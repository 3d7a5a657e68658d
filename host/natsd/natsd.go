// Package natsd starts the NATS server meshd runs on, or connects to an
// external one.
//
// By default meshd embeds nats-server in-process with JetStream enabled and
// its store under the data directory, so a single machine needs no outside
// service. The in-process connection does not use a TCP port; a client port
// is opened only when Config.Listen is set (for other nodes or tools). When
// Config.URL is set, no server is started and meshd connects to that URL.
//
// Every connection to the embedded server authenticates. meshd's own
// in-process connection signs with a user nkey generated at each start and
// accepted on in-process connections only; clients of the Listen port need
// the credentials of Config.Auth and get its grants only (see Auth). A
// Listen port without credentials is refused, and so is one beyond
// loopback without TLS unless Auth.Plaintext.
//
// With Config.Cluster the embedded server is a node of a NATS cluster,
// JetStream clustered: Start returns once the cluster has a JetStream meta
// leader (a majority of its nodes is up), or fails after Cluster.Wait
// saying what is missing; Server.Replicas then says how many replicas a
// stream or bucket can have.
package natsd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// readyTimeout bounds how long Start waits for the embedded server.
	readyTimeout = 10 * time.Second
	// drainTimeout bounds how long Close waits for the connection to drain.
	drainTimeout = 30 * time.Second
)

// Config configures Start. The zero value runs an embedded server with no
// client port; DataDir is required in embedded mode.
type Config struct {
	// DataDir is meshd's data directory; JetStream stores under DataDir/nats.
	DataDir string
	// URL of an external NATS server or cluster. Empty means embedded.
	URL string
	// Listen is the host:port the embedded server accepts clients on
	// ("127.0.0.1:4222", or "127.0.0.1:0" for a random port). Empty means no
	// client port: in-process connections only.
	Listen string
	// Sync makes JetStream fsync every write. When false JetStream uses its
	// default periodic sync interval.
	Sync bool
	// Name is the server (node) name; empty lets nats-server choose.
	Name string
	// Auth holds the credentials, grants and TLS of the Listen port, or
	// what meshd presents to URL.
	Auth Auth
	// Cluster, when set, makes the embedded server a node of a NATS
	// cluster (see Cluster). Not with URL.
	Cluster *Cluster
	// Replicas is the replica count asked for (--replicas; 0 automatic).
	// When it is 0 and URL reaches a server of a cluster, Start finds how
	// many replicas, up to DefaultReplicas, that cluster's JetStream
	// places now (see Server.Replicas).
	Replicas int
}

// Server is a running NATS connection, with the embedded server behind it
// when meshd started one.
type Server struct {
	ns  *server.Server // nil in external mode
	nc  *nats.Conn
	js  jetstream.JetStream
	url string
	// size is the number of cluster nodes up at start (1 alone, 0
	// external); clustered is whether the server is a cluster's node (the
	// embedded one, or the external one meshd connected to).
	size      int
	clustered bool
	// placeable is, for an external server, the replicas its JetStream
	// placed at start (probeReplicas; 0 when not asked).
	placeable int
	once      sync.Once
	err       error
}

// Start starts the embedded server (or connects to Config.URL), connects to
// it and returns when the connection is ready. The context bounds startup.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsd: %w", err)
	}
	if cfg.URL != "" {
		return connectExternal(ctx, cfg, log)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("natsd: DataDir is required for the embedded server")
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		SyncAlways: cfg.Sync,
		NoSigs:     true,
	}
	switch {
	case cfg.Listen == "" && cfg.Cluster != nil:
		// nats-server starts routing only once its client listener is
		// open, never with DontListen: a cluster node gets a random
		// loopback client port no one can log in to (its only TCP users
		// are the Listen port's, and there are none) and which its routes
		// do not advertise.
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	case cfg.Listen == "":
		opts.DontListen = true
	default:
		host, port, _ := net.SplitHostPort(cfg.Listen) // checked by Validate
		p, _ := strconv.Atoi(port)
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	self, err := serverAuth(opts, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster != nil {
		if err := clusterOptions(opts, cfg); err != nil {
			return nil, err
		}
		if err := setRaftTimeouts(); err != nil {
			return nil, fmt.Errorf("natsd: %w", err)
		}
	}
	selfOpt, err := selfAuth(self)
	if err != nil {
		return nil, fmt.Errorf("natsd: meshd's own key: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsd: new server: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(&logAdapter{log: log.With("component", "nats-server"), fatal: fatal}, log.Enabled(ctx, slog.LevelDebug), false, false)
	ns.Start()
	if err := waitReady(ctx, ns, fatal); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	size := 1
	if cfg.Cluster != nil {
		size, err = waitCluster(ctx, ns, cfg)
		if err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
		log.Info("nats cluster ready", "cluster", opts.Cluster.Name, "node", opts.ServerName,
			"cluster_url", clusterURL(ns), "nodes_up", size, "routes", len(opts.Routes), "tls", opts.Cluster.TLSConfig != nil)
		if opts.Cluster.Username == "" {
			log.Warn("nats cluster routes without credentials (a loopback cluster): any process of this machine may join it as a node; give --cluster-user and --cluster-password-file to close it", "cluster_url", clusterURL(ns))
		}
		if opts.Cluster.TLSConfig == nil && !isLoopback(opts.Cluster.Host) {
			log.Warn("nats cluster port beyond loopback without TLS (--nats-plaintext): events and state cross the network in clear", "cluster_url", clusterURL(ns))
		}
	}
	// In a cluster the server tells its clients of the other nodes' client
	// ports: meshd's own connection is to its own server only.
	nc, err := nats.Connect("", nats.InProcessServer(ns), selfOpt, nats.Name("meshd"), nats.MaxReconnects(-1), nats.IgnoreDiscoveredServers(), asyncErrors(log))
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsd: in-process connect: %w", err)
	}
	js, err := newJetStream(nc, cfg.Cluster != nil)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsd: jetstream: %w", err)
	}
	s := &Server{ns: ns, nc: nc, js: js, size: size, clustered: cfg.Cluster != nil}
	if cfg.Listen != "" {
		s.url = ns.ClientURL()
	}
	if s.url == "" {
		log.Info("nats embedded server ready", "store", opts.StoreDir, "client_url", s.url, "sync", cfg.Sync)
		return s, nil
	}
	a := cfg.Auth
	log.Info("nats embedded server ready", "store", opts.StoreDir, "client_url", s.url, "sync", cfg.Sync,
		"client_user", a.User, "client_nkey", a.NKey != "", "tls", opts.TLSConfig != nil, "client_certificates", opts.TLSVerify,
		"grants_publish", len(a.AllowPublish), "grants_subscribe", len(a.AllowSubscribe))
	if len(a.AllowPublish) == 0 && len(a.AllowSubscribe) == 0 {
		log.Info("nats clients may connect but are granted no subject (--nats-allow-publish, --nats-allow-subscribe)")
	}
	if opts.TLSConfig == nil && !isLoopback(opts.Host) {
		log.Warn("nats client port beyond loopback without TLS (--nats-plaintext): passwords and events cross the network in clear", "client_url", s.url)
	}
	return s, nil
}

// waitReady waits until ns listens, at most readyTimeout, and fails at
// once when the server reports a fatal error (a listener that cannot
// bind its port).
func waitReady(ctx context.Context, ns *server.Server, fatal <-chan string) error {
	wait := readyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < wait {
			wait = d
		}
	}
	deadline := time.Now().Add(wait)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			return fmt.Errorf("natsd: server not ready: %s", quote(msg))
		default:
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("natsd: server not ready: %w", err)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("natsd: server not ready after %s", wait)
		}
	}
	return nil
}

// asyncErrors logs what the client reports outside any call: a
// subscription that fell behind (slow consumer: messages dropped) above
// all.
func asyncErrors(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		log.Warn("nats: asynchronous error", "subject", subject, "error", err)
	})
}

func connectExternal(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	opts := []nats.Option{nats.Name("meshd"), nats.MaxReconnects(-1), asyncErrors(log)}
	auth, err := clientAuth(cfg.Auth)
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsd: connect %s: %w", redactURL(cfg.URL), err)
	}
	// A server of a cluster names it in its INFO; a standalone one does
	// not. Its JetStream then answers as a cluster's does (see
	// clusterAPITimeout).
	cluster := nc.ConnectedClusterName()
	js, err := newJetStream(nc, cluster != "")
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsd: jetstream: %w", err)
	}
	s := &Server{nc: nc, js: js, clustered: cluster != ""}
	log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName(), "cluster", cluster)
	if cfg.Replicas != 0 {
		log.Info("nats replicas as asked (--replicas)", "replicas", s.Replicas(cfg.Replicas))
		return s, nil
	}
	if cluster == "" {
		s.placeable = 1
		log.Info("nats replicas: 1 (a standalone server)")
		return s, nil
	}
	n, err := probeReplicas(ctx, js)
	if err != nil {
		s.placeable = 1
		log.Warn("nats replicas: 1, since the cluster's JetStream did not say how many it places (give --replicas)",
			"cluster", quote(cluster), "error", quote(err.Error()))
		return s, nil
	}
	s.placeable = n
	log.Info("nats replicas: the most its JetStream placed, up to 3", "cluster", quote(cluster), "replicas", n)
	return s, nil
}

// Error codes of the JetStream API that say a stream cannot have the
// replicas asked for.
const (
	jsNoPeers              = 10005 // no suitable peers for placement
	jsInsufficientResource = 10023
	jsReplicasUnsupported  = 10074 // replicas > 1 on a standalone server
)

// probeReplicas returns the most replicas, DefaultReplicas at most, the
// JetStream behind js places a stream with now: it creates a small memory
// stream of its own with DefaultReplicas, then one less, down to 2, and
// deletes the one made. A client of an ordinary account cannot read the
// size of the cluster's JetStream (that is the system account's), but the
// placement of a stream is what the replicas are for. 1 when none of
// those places; an error when JetStream refused for another reason.
func probeReplicas(ctx context.Context, js jetstream.JetStream) (int, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "meshd_replicas_probe_" + hex.EncodeToString(b[:])
	defer func() {
		// Also after an attempt that timed out: its stream may be made.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(dctx, name)
	}()
	for r := DefaultReplicas; r > 1; r-- {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: "meshd: how many replicas the cluster places; deleted at once",
			Subjects:    []string{"meshd.replicas-probe." + name},
			Storage:     jetstream.MemoryStorage,
			Replicas:    r,
			MaxMsgs:     1,
		})
		if err == nil {
			return r, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			return 0, err
		}
		switch apiErr.ErrorCode {
		case jsNoPeers, jsInsufficientResource, jsReplicasUnsupported:
		default:
			return 0, err
		}
	}
	return 1, nil
}

// redactURL returns the server URLs of u (a comma-separated list) without
// the passwords they may carry, bounded and escaped for a message.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if pu, err := url.Parse(strings.TrimSpace(p)); err == nil && pu.User != nil {
			parts[i] = pu.Redacted()
		} else if err != nil && strings.Contains(p, "@") {
			parts[i] = "(unparsable URL)"
		}
	}
	return quote(strings.Join(parts, ","))
}

// Conn returns the NATS connection.
func (s *Server) Conn() *nats.Conn { return s.nc }

// JetStream returns the JetStream context on Conn.
func (s *Server) JetStream() jetstream.JetStream { return s.js }

// ClientURL returns the URL other clients can connect to, or "" when the
// embedded server does not listen (or the server is external).
func (s *Server) ClientURL() string { return s.url }

// Close drains the connection, then shuts the embedded server down and waits
// for it. It is safe to call more than once; later calls return the first
// result.
func (s *Server) Close() error {
	s.once.Do(func() {
		if s.nc != nil {
			done := make(chan struct{})
			s.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
			if err := s.nc.Drain(); err != nil {
				s.nc.Close()
				if !errors.Is(err, nats.ErrConnectionClosed) {
					s.err = fmt.Errorf("natsd: drain: %w", err)
				}
			} else {
				select {
				case <-done:
				case <-time.After(drainTimeout):
					s.nc.Close()
					s.err = fmt.Errorf("natsd: drain did not finish in %s", drainTimeout)
				}
			}
		}
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
	})
	return s.err
}

// logAdapter sends nats-server logs to slog. Notices go out at debug level,
// warnings and errors at their own level: the server is an implementation
// detail, but its problems are ours.
type logAdapter struct {
	log *slog.Logger
	// fatal receives the first fatal error, for Start to report; nil or
	// full, it drops them.
	fatal chan<- string
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if msg == plaintextWarning {
		// Meant for configuration files holding passwords; meshd's come
		// from the operator's password file (see serverAuth).
		l.log.Debug(msg)
		return
	}
	l.log.Warn(msg)
}

// plaintextWarning is what nats-server says at start when a user's
// password is not a bcrypt hash.
const plaintextWarning = "Plaintext passwords detected, use nkeys or bcrypt"

func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l *logAdapter) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

// Interface guards
var _ server.Logger = (*logAdapter)(nil)

// asyncAckTimeout bounds how long an asynchronous publish (kv.Store.Apply,
// bus.PublishAll) waits for its acknowledgement inside the client: the
// callers stop waiting at their own deadline, and this drops the pending
// record of an acknowledgement that never comes (the server restarted,
// the connection was lost) instead of keeping it for the life of the
// process.
const asyncAckTimeout = 30 * time.Second

func newJetStream(nc *nats.Conn, clustered bool) (jetstream.JetStream, error) {
	opts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(asyncAckTimeout)}
	if clustered {
		opts = append(opts, jetstream.WithDefaultTimeout(clusterAPITimeout))
	}
	return jetstream.New(nc, opts...)
}

// clusterAPITimeout bounds a JetStream request without a deadline of its
// own on a cluster node (5 s alone): a stream or bucket created by several
// nodes at once, or one whose leader was lost, answers once its replicas
// have elected a leader, which takes nats-server's election timeout (4 to
// 9 s), longer on a loaded machine.
const clusterAPITimeout = 20 * time.Second
