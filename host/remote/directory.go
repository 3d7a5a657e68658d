package remote

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/internal/jsapi"
	"github.com/meshd/meshd/host/internal/names"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the key-value bucket nodes announce their services in.
const Bucket = "meshd_nodes"

// StatusUp is the status of a service version able to take calls (the
// registry's "UP").
const StatusUp = "UP"

// Defaults and bounds of a Directory.
const (
	// DefaultHeartbeat is how often a node rewrites its announcement.
	DefaultHeartbeat = time.Second
	// DefaultTTL is how long an announcement lives unless rewritten: a
	// node that stops heartbeating leaves the other nodes' views within
	// it.
	DefaultTTL = 5 * time.Second
	// MinTTL is the shortest TTL JetStream keeps a message for.
	MinTTL = time.Second
	// MaxServices bounds the services one announcement lists; a node
	// serving more announces the first MaxServices by name.
	MaxServices = 1024
	// MaxAnnouncementBytes bounds an announcement (the bucket's maximum
	// value size): MaxServices of the longest names fit.
	MaxAnnouncementBytes = 512 << 10
	// MaxNodes bounds the nodes a Directory's view holds.
	MaxNodes = 1024
	// MaxVersionBytes and MaxStatusBytes bound those fields of an
	// announced service.
	MaxVersionBytes = 128
	MaxStatusBytes  = 32
	// MaxRoutes bounds the routes announced of one service version, and
	// MaxRouteBytes a route's method and path together.
	MaxRoutes     = 256
	MaxRouteBytes = 512
	// expiryGrace is how long past an announcement's TTL a watcher keeps
	// it when no delete marker came.
	expiryGrace = time.Second
	// markerTTL is how long the bucket keeps the delete marker of a key
	// whose TTL lapsed or that its node deleted.
	markerTTL = time.Minute
)

// Service is one service version a node serves, as announced.
type Service struct {
	Service string `json:"service"`
	Version string `json:"version"`
	Status  string `json:"status"`
	// Load is the calls and requests the version runs or holds now.
	Load int `json:"load"`
	// Routes are the version's public routes (internal ones are not
	// announced): another node's gateway serves them by forwarding.
	Routes []Route `json:"routes,omitempty"`
}

// Route is one public route of an announced service: an HTTP method and a
// net/http path pattern.
type Route struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Announcement is the value of a node's key in Bucket.
type Announcement struct {
	Node     string    `json:"node"`
	TTLMs    int64     `json:"ttl_ms"`
	Services []Service `json:"services"`
}

// Instance is one service version served by another node, as this node
// last heard of it.
type Instance struct {
	Node    string    `json:"node"`
	Service string    `json:"service"`
	Version string    `json:"version"`
	Status  string    `json:"status"`
	Load    int       `json:"load"`
	Seen    time.Time `json:"last_seen"`
	Routes  []Route   `json:"-"`
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	// Node is this node's name: letters, digits, '.', '_' and '-', 1 to
	// MaxNodeBytes bytes.
	Node string
	// Heartbeat is how often the node rewrites its announcement
	// (DefaultHeartbeat when 0).
	Heartbeat time.Duration
	// TTL is how long the announcement lives unless rewritten (DefaultTTL
	// when 0): at least MinTTL and at least twice Heartbeat.
	TTL time.Duration
	// Local returns what this node serves now; it is called at every
	// heartbeat and must be quick. Nil announces nothing: the Directory
	// only watches.
	Local func() []Service
	// Log receives announcement and watch failures; nil discards them.
	Log *slog.Logger
	// Replicas is the copies of Bucket JetStream keeps, on as many nodes
	// of a cluster (1 when 0): with one copy, the node holding it takes
	// every node's announcements with it when it goes. A bucket with more
	// keeps them.
	Replicas int
	// OnChange, when set, is called after the view changed what other
	// nodes serve (a node, service, version, status or route came or
	// went; a change of load alone does not call it). It is called from
	// the Directory's goroutine, holding none of its locks, and should
	// return quickly.
	OnChange func()
}

// Validate reports every problem of c, its zero fields taken as their
// defaults.
func (c DirectoryConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if !validNode(c.Node) {
		errs = append(errs, fmt.Errorf("Node: %s is not 1 to %d letters, digits, '.', '_' or '-'", names.Display(c.Node), MaxNodeBytes))
	}
	if c.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("Heartbeat: %v is not positive", c.Heartbeat))
	}
	if c.TTL < MinTTL {
		errs = append(errs, fmt.Errorf("TTL: %v is less than %v", c.TTL, MinTTL))
	} else if c.TTL < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("TTL: %v is less than twice Heartbeat (%v): one late heartbeat would drop the node", c.TTL, c.Heartbeat))
	}
	return errors.Join(errs...)
}

func (c DirectoryConfig) withDefaults() DirectoryConfig {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// validNode reports whether name can name a node.
func validNode(name string) bool {
	return len(name) <= MaxNodeBytes && names.Plain(name)
}

// nodeKey escapes a node name into a key of Bucket: letters, digits, '_'
// and '-' as they are, any other byte as '=' and two hex digits.
func nodeKey(node string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(node); i++ {
		c := node[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Directory announces this node's services in Bucket and watches every
// other node's: the mesh-wide view of who serves what.
type Directory struct {
	cfg  DirectoryConfig
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	key  string
	subj string
	now  func() time.Time

	mu      sync.RWMutex
	nodes   map[string]*nodeView // by key
	serving map[string]int       // service → UP instances on other nodes
	shape   string               // what other nodes serve, loads aside: a change calls OnChange
	full    bool                 // a node was refused for MaxNodes

	kick      chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	watcher   jetstream.KeyWatcher
	ready     chan struct{}
	readyOnce sync.Once
	wcancel   context.CancelFunc
	pubFailed bool // owned by the heartbeat goroutine
	// ownSeen is when the watch last delivered this node's own
	// announcement, and healthySince when this node's announcements last
	// began to succeed after failing (both under mu; see prune).
	ownSeen, healthySince time.Time
}

type nodeView struct {
	ann  Announcement
	seen time.Time
}

// StartDirectory creates (or updates) Bucket, starts watching it and,
// when cfg.Local is set, announcing this node. It returns once the view
// holds every announcement present, or when ctx ends.
func StartDirectory(ctx context.Context, js jetstream.JetStream, cfg DirectoryConfig) (*Directory, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("remote: directory config: %w", err)
	}
	if js == nil {
		return nil, errors.New("remote: StartDirectory: nil JetStream")
	}
	kv, err := ensureBucket(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	d := &Directory{
		cfg: cfg, js: js, kv: kv, key: nodeKey(cfg.Node),
		now:     time.Now,
		nodes:   make(map[string]*nodeView),
		serving: make(map[string]int),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		ready:   make(chan struct{}),
	}
	d.subj = "$KV." + Bucket + "." + d.key
	// The watch's context lives as long as the Directory: the client
	// keeps a goroutine waiting on it.
	wctx, wcancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		wcancel()
		return nil, fmt.Errorf("remote: watch %s: %w", Bucket, err)
	}
	d.wcancel = wcancel
	d.watcher = w
	d.wg.Add(2)
	go d.watch()
	go d.heartbeat()
	select {
	case <-d.ready:
	case <-ctx.Done():
		d.Close(context.Background())
		return nil, fmt.Errorf("remote: watch %s: initial values: %w", Bucket, ctx.Err())
	}
	return d, nil
}

// ensureBucket creates Bucket, or updates it to this version's settings,
// with replicas copies or the bucket's own count when that is more.
func ensureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	replicas = max(replicas, 1)
	if kv, err := jsapi.KeyValue(ctx, js, Bucket); err == nil {
		if st, err := jsapi.Do(ctx, kv.Status); err == nil {
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
				replicas = max(replicas, bs.StreamInfo().Config.Replicas)
			}
		}
	}
	kvc := jetstream.KeyValueConfig{
		Replicas:       replicas,
		Bucket:         Bucket,
		Description:    "meshd: the services each node serves, one key per node, kept alive by a heartbeat",
		History:        1,
		Storage:        jetstream.MemoryStorage,
		MaxValueSize:   MaxAnnouncementBytes,
		LimitMarkerTTL: markerTTL,
	}
	kv, err := jsapi.CreateOrUpdateKeyValue(ctx, js, kvc)
	if err != nil {
		return nil, fmt.Errorf("remote: bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Announce rewrites this node's announcement now rather than at the next
// heartbeat (after a service was loaded, replaced or removed). It does
// not block.
func (d *Directory) Announce() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// heartbeat announces this node every Heartbeat (and on Announce), and
// drops from the view the nodes whose announcements lapsed.
func (d *Directory) heartbeat() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.Heartbeat)
	defer t.Stop()
	d.publish()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.kick:
		}
		failed := d.pubFailed
		d.publish()
		if failed && !d.pubFailed {
			d.mu.Lock()
			d.healthySince = d.now()
			d.mu.Unlock()
		}
		if !d.pubFailed {
			// While this node cannot write to the bucket either, the
			// silence is the bucket's (its copies electing a leader),
			// not the other nodes': keep them.
			d.prune()
		}
	}
}

// announcement is what this node announces now.
func (d *Directory) announcement() Announcement {
	ann := Announcement{Node: d.cfg.Node, TTLMs: d.cfg.TTL.Milliseconds()}
	for _, s := range d.cfg.Local() {
		if !validService(s) {
			continue
		}
		ann.Services = append(ann.Services, s)
	}
	slices.SortFunc(ann.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Version, b.Version))
	})
	if len(ann.Services) > MaxServices {
		ann.Services = ann.Services[:MaxServices]
	}
	return ann
}

// publish writes this node's announcement with its TTL.
func (d *Directory) publish() {
	if d.cfg.Local == nil {
		return
	}
	data, err := json.Marshal(d.announcement())
	if err == nil && len(data) > MaxAnnouncementBytes {
		err = fmt.Errorf("announcement of %d bytes passes %d", len(data), MaxAnnouncementBytes)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Heartbeat)
		_, err = d.js.Publish(ctx, d.subj, data, jetstream.WithMsgTTL(d.cfg.TTL))
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// The bucket is gone (an external server restarted): make it
			// again; the next heartbeat writes into it.
			if _, berr := ensureBucket(ctx, d.js, d.cfg.Replicas); berr != nil {
				err = errors.Join(err, berr)
			}
		}
		cancel()
	}
	// Log the change from working to failing and back, not every beat.
	if err != nil && !d.pubFailed {
		d.cfg.Log.Warn("remote: announcing this node failed; other nodes drop it when its TTL lapses",
			slog.String("node", d.cfg.Node), slog.Duration("ttl", d.cfg.TTL), slog.String("error", err.Error()))
	} else if err == nil && d.pubFailed {
		d.cfg.Log.Info("remote: announcing this node again", slog.String("node", d.cfg.Node))
	}
	d.pubFailed = err != nil
}

// validService reports whether s can be announced and kept.
func validService(s Service) bool {
	if len(s.Routes) > MaxRoutes {
		return false
	}
	for _, r := range s.Routes {
		if r.Method == "" || len(r.Method)+len(r.Path) > MaxRouteBytes || !names.Plain(r.Method) || !strings.HasPrefix(r.Path, "/") {
			return false
		}
	}
	return abi.ValidServiceName(s.Service) && len(s.Version) <= MaxVersionBytes &&
		s.Status != "" && len(s.Status) <= MaxStatusBytes && s.Load >= 0
}

// watch applies the bucket's changes to the view until Close.
func (d *Directory) watch() {
	defer d.wg.Done()
	updates := d.watcher.Updates()
	for {
		select {
		case <-d.stop:
			return
		case e, ok := <-updates:
			if !ok {
				return
			}
			if e == nil {
				d.readyOnce.Do(func() { close(d.ready) })
				continue
			}
			d.apply(e)
		}
	}
}

// apply applies one change of the bucket.
func (d *Directory) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		d.mu.Lock()
		delete(d.nodes, key)
		changed := d.reindexLocked()
		d.mu.Unlock()
		d.changed(changed)
		return
	}
	var ann Announcement
	if len(e.Value()) > MaxAnnouncementBytes {
		d.refuse(key, "too large")
		return
	}
	if err := json.Unmarshal(e.Value(), &ann); err != nil {
		d.refuse(key, "not JSON")
		return
	}
	if !validNode(ann.Node) || nodeKey(ann.Node) != key {
		d.refuse(key, "node name does not match its key")
		return
	}
	if len(ann.Services) > MaxServices {
		ann.Services = ann.Services[:MaxServices]
	}
	ann.Services = slices.DeleteFunc(ann.Services, func(s Service) bool { return !validService(s) })
	d.mu.Lock()
	if _, ok := d.nodes[key]; !ok && len(d.nodes) >= MaxNodes {
		if !d.full {
			d.cfg.Log.Warn("remote: more nodes than a directory keeps; ignoring the others", slog.Int("max_nodes", MaxNodes))
		}
		d.full = true
		d.mu.Unlock()
		return
	}
	d.nodes[key] = &nodeView{ann: ann, seen: d.now()}
	if key == d.key {
		d.ownSeen = d.nodes[key].seen
	}
	changed := d.reindexLocked()
	d.mu.Unlock()
	d.changed(changed)
}

// changed calls OnChange when the view's shape changed.
func (d *Directory) changed(changed bool) {
	if changed && d.cfg.OnChange != nil {
		d.cfg.OnChange()
	}
}

func (d *Directory) refuse(key, why string) {
	d.cfg.Log.Warn("remote: ignoring a node's announcement", slog.String("key", names.Display(key)), slog.String("reason", why))
}

// prune drops the nodes not heard of for their TTL plus expiryGrace.
// Silence is the bucket's, not the other nodes', and nothing is dropped,
// while this node's own announcements do not come back through the watch
// (the watch is behind or being rebuilt after the bucket's leader
// changed), and for a TTL after its announcements succeed again (the
// others were failing to announce too, and need a heartbeat to be heard).
// After a node's loss the bucket elects a leader for seconds: pruning by
// the clock alone then dropped the live nodes too, and their services
// answered 503 until they were heard again.
func (d *Directory) prune() {
	d.mu.Lock()
	changed := false
	defer func() {
		d.mu.Unlock()
		d.changed(changed)
	}()
	now := d.now()
	if d.cfg.Local != nil && now.Sub(d.ownSeen) > d.cfg.TTL {
		return // deaf: our own heartbeats are not heard either
	}
	n := len(d.nodes)
	for k, v := range d.nodes {
		ttl := time.Duration(v.ann.TTLMs) * time.Millisecond
		if ttl <= 0 || ttl > 10*DefaultTTL {
			ttl = DefaultTTL
		}
		last := v.seen
		if d.healthySince.After(last) {
			last = d.healthySince
		}
		if now.Sub(last) > ttl+expiryGrace {
			delete(d.nodes, k)
		}
	}
	if len(d.nodes) != n {
		changed = d.reindexLocked()
	}
}

// reindexLocked rebuilds serving from nodes, and reports whether what
// other nodes serve changed, loads aside.
func (d *Directory) reindexLocked() bool {
	clear(d.serving)
	var shape []string
	for _, v := range d.nodes {
		if v.ann.Node == d.cfg.Node {
			continue
		}
		for _, s := range v.ann.Services {
			if s.Status == StatusUp {
				d.serving[s.Service]++
			}
			if d.cfg.OnChange != nil {
				shape = append(shape, fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%v", v.ann.Node, s.Service, s.Version, s.Status, s.Routes))
			}
		}
	}
	d.full = d.full && len(d.nodes) >= MaxNodes
	slices.Sort(shape)
	sh := strings.Join(shape, "\n")
	changed := sh != d.shape
	d.shape = sh
	return changed
}

// Serving reports whether another node serves service UP.
func (d *Directory) Serving(service string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.serving[service] > 0
}

// Instances returns every service version other nodes serve, by service,
// then node, then version.
func (d *Directory) Instances() []Instance {
	d.mu.RLock()
	var out []Instance
	for _, v := range d.nodes {
		if v.ann.Node == d.cfg.Node {
			continue
		}
		for _, s := range v.ann.Services {
			out = append(out, Instance{Node: v.ann.Node, Service: s.Service, Version: s.Version, Status: s.Status, Load: s.Load, Seen: v.seen, Routes: s.Routes})
		}
	}
	d.mu.RUnlock()
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Version, b.Version))
	})
	return out
}

// Close stops announcing and watching, and deletes this node's
// announcement so other nodes drop it at once (they drop it within its
// TTL when that fails). It is idempotent.
func (d *Directory) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		close(d.stop)
		var errs []error
		if err := d.watcher.Stop(); err != nil && !errors.Is(err, jetstream.ErrConnectionClosed) {
			errs = append(errs, err)
		}
		d.wg.Wait()
		d.wcancel()
		// The client's callback may be blocked handing the watcher an
		// update nobody reads any more: take them until it gives up.
		drain(d.watcher.Updates())
		if d.cfg.Local != nil {
			if err := d.kv.Purge(ctx, d.key, jetstream.PurgeTTL(markerTTL)); err != nil && !errors.Is(err, jetstream.ErrConnectionClosed) {
				errs = append(errs, fmt.Errorf("remote: withdraw node %s: %w", names.Display(d.cfg.Node), err))
			}
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// drain reads ch until it is closed or nothing comes for a second.
func drain(ch <-chan jetstream.KeyValueEntry) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}
