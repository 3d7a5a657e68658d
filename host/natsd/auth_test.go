package natsd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/testkit"
)

const (
	testUser     = "tool"
	testPassword = "correct horse battery staple"
)

// listen starts an embedded server with a client port on 127.0.0.1 and
// the given client auth, and returns it with its client URL.
func listen(t *testing.T, a Auth) (*Server, string) {
	t.Helper()
	s := start(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: a})
	if s.ClientURL() == "" {
		t.Fatal("ClientURL empty in listen mode")
	}
	return s, s.ClientURL()
}

// client is a connection to url with opts that records the asynchronous
// errors the server sends it (permission violations).
type client struct {
	*nats.Conn
	errs chan error
}

func dial(url string, opts ...nats.Option) (*client, error) {
	c := &client{errs: make(chan error, 64)}
	opts = append(opts, nats.Timeout(10*time.Second), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	c.Conn = nc
	return c, nil
}

func mustDial(t *testing.T, url string, opts ...nats.Option) *client {
	t.Helper()
	c, err := dial(url, opts...)
	if err != nil {
		t.Fatalf("connect with credentials: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// violation waits for the permission violation the server reports for
// subject.
func (c *client) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation reported for %s", subject)
		}
	}
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || (err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization"))
}

// meshdState makes, through meshd's own in-process connection, what the
// reproduction reached: an events stream and a service's bucket with an
// order in it.
func meshdState(t *testing.T, s *Server) (jetstream.Stream, jetstream.KeyValue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := s.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"meshd.events.>"}})
	if err != nil {
		t.Fatalf("meshd creates its stream: %v", err)
	}
	kv, err := s.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "meshd_svc_order"})
	if err != nil {
		t.Fatalf("meshd creates its bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "o1", []byte(`{"status":"PENDING","total":9000000}`)); err != nil {
		t.Fatalf("meshd writes its bucket: %v", err)
	}
	return st, kv
}

func TestListenWithoutCredentialsRefused(t *testing.T) {
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}, nil)
	if err == nil {
		t.Fatal("a client port without credentials started")
	}
	if !strings.Contains(err.Error(), "a NATS client port needs credentials") || !strings.Contains(err.Error(), "--nats-user") {
		t.Fatalf("error does not say what to give: %v", err)
	}
}

// TestListenRefusesClientsWithoutCredentials: what the reproduction did (a
// plain client on the port) is refused, and so are wrong credentials.
func TestListenRefusesClientsWithoutCredentials(t *testing.T) {
	_, url := listen(t, Auth{User: testUser, Password: testPassword})
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"none", nil},
		{"wrong password", []nats.Option{nats.UserInfo(testUser, "wrong")}},
		{"wrong user", []nats.Option{nats.UserInfo("meshd", testPassword)}},
		{"empty password", []nats.Option{nats.UserInfo(testUser, "")}},
		{"unknown nkey", []nats.Option{nats.Nkey(otherPub, other.Sign)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc, err := dial(url, c.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !isAuthError(err) {
				t.Fatalf("want an authorization error, got %v", err)
			}
		})
	}
}

// TestListenGrantsNothingByDefault: with the operator's credentials and no
// grants, a client connects and can do nothing: no stream list, no event
// published, no bucket written, nothing seen.
func TestListenGrantsNothingByDefault(t *testing.T) {
	s, url := listen(t, Auth{User: testUser, Password: testPassword})
	st, kv := meshdState(t, s)
	c := mustDial(t, url, nats.UserInfo(testUser, testPassword))

	if _, err := c.Request("$JS.API.STREAM.NAMES", nil, 2*time.Second); err == nil {
		t.Fatal("the client listed the streams")
	}
	c.violation(t, "$JS.API.STREAM.NAMES")

	if err := c.Publish("meshd.events.PAYMENT_COMPLETED", []byte(`{"order_id":"o1"}`)); err != nil {
		t.Fatal(err)
	}
	c.violation(t, "meshd.events.PAYMENT_COMPLETED")
	if err := c.Publish("$KV.meshd_svc_order.o1", []byte(`{"status":"PAID"}`)); err != nil {
		t.Fatal(err)
	}
	c.violation(t, "$KV.meshd_svc_order.o1")
	if _, err := c.SubscribeSync("meshd.events.>"); err != nil {
		t.Fatal(err)
	}
	c.violation(t, "meshd.events.>")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the client's event reached the stream: %d messages", info.State.Msgs)
	}
	e, err := kv.Get(ctx, "o1")
	if err != nil || !strings.Contains(string(e.Value()), "PENDING") {
		t.Fatalf("the order changed: %v %q", err, e.Value())
	}
}

// TestListenGrants: a client gets exactly what the operator granted:
// watching events, not publishing them.
func TestListenGrants(t *testing.T) {
	s, url := listen(t, Auth{User: testUser, Password: testPassword, AllowSubscribe: []string{"meshd.events.>"}})
	st, _ := meshdState(t, s)
	c := mustDial(t, url, nats.UserInfo(testUser, testPassword))
	sub, err := c.SubscribeSync("meshd.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.JetStream().Publish(ctx, "meshd.events.ORDER_CREATED", []byte("x")); err != nil {
		t.Fatalf("meshd publishes: %v", err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || m.Subject != "meshd.events.ORDER_CREATED" {
		t.Fatalf("the granted subscription saw %v, %v", m, err)
	}
	if err := c.Publish("meshd.events.PAYMENT_COMPLETED", []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.violation(t, "meshd.events.PAYMENT_COMPLETED")
	if _, err := c.SubscribeSync("$KV.meshd_svc_order.>"); err != nil {
		t.Fatal(err)
	}
	c.violation(t, "$KV.meshd_svc_order.>")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream: %v messages, %v; want meshd's one", info.State.Msgs, err)
	}
}

// TestSecondNodeSharesTheStreams: a second meshd connects with --nats-url
// and the credentials of a client granted everything, and sees and writes
// the same streams and buckets; meshd's own connection keeps working.
func TestSecondNodeSharesTheStreams(t *testing.T) {
	s, url := listen(t, Auth{User: "node", Password: testPassword, AllowPublish: []string{">"}, AllowSubscribe: []string{">"}})
	st, kv := meshdState(t, s)

	if _, err := Start(context.Background(), Config{URL: url}, nil); err == nil || !isAuthError(err) {
		t.Fatalf("a second node without credentials: %v, want an authorization error", err)
	}
	n2 := start(t, Config{URL: url, Auth: Auth{User: "node", Password: testPassword}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	kv2, err := n2.JetStream().KeyValue(ctx, "meshd_svc_order")
	if err != nil {
		t.Fatalf("node 2 opens the bucket: %v", err)
	}
	if _, err := kv2.Put(ctx, "o2", []byte("from node 2")); err != nil {
		t.Fatalf("node 2 writes: %v", err)
	}
	if e, err := kv.Get(ctx, "o2"); err != nil || string(e.Value()) != "from node 2" {
		t.Fatalf("node 1 reads node 2's write: %v", err)
	}
	if _, err := n2.JetStream().Publish(ctx, "meshd.events.ORDER_CREATED", []byte("x")); err != nil {
		t.Fatalf("node 2 publishes: %v", err)
	}
	// meshd's own connection consumes what node 2 published.
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "order", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if got != 1 {
		t.Fatalf("meshd consumed %d events, want 1 (%v)", got, batch.Error())
	}
}

// TestListenNkey: a client signs with the operator's nkey; another key is
// refused. The server may be given the seed or only the public key.
func TestListenNkey(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	for _, key := range []string{pub, string(seed)} {
		_, url := listen(t, Auth{NKey: key, AllowSubscribe: []string{"tools.>"}})
		if nc, err := dial(url); err == nil {
			nc.Close()
			t.Fatal("connected without the nkey")
		}
		c := mustDial(t, url, nats.Nkey(pub, kp.Sign))
		if _, err := c.SubscribeSync("tools.x"); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish("tools.x", nil); err != nil {
			t.Fatal(err)
		}
		c.violation(t, "tools.x")

		// meshd connects to it the same way, from a seed.
		start(t, Config{URL: url, Auth: Auth{NKey: string(seed)}})
	}
}

// TestListenTLS: with a certificate, clients must use TLS; meshd as a
// client verifies the server with the CA it is given.
func TestListenTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := testkit.SelfSigned(t, dir)
	s, url := listen(t, Auth{User: testUser, Password: testPassword, TLSCert: cert, TLSKey: key})
	if _, err := dial(url, nats.UserInfo(testUser, testPassword)); err == nil {
		t.Fatal("a client without TLS connected")
	}
	mustDial(t, url, nats.UserInfo(testUser, testPassword), nats.RootCAs(cert))
	start(t, Config{URL: url, Auth: Auth{User: testUser, Password: testPassword, TLSCA: cert}})

	// meshd's own in-process connection needs no TLS.
	if _, err := s.JetStream().AccountInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestConnectErrorHidesPassword: a URL's password does not reach the
// error.
func TestConnectErrorHidesPassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Start(ctx, Config{URL: "nats://u:s3cr3t@" + addr}, nil)
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("the password is in the error: %v", err)
	}
}

func TestValidate(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	pw := Auth{User: testUser, Password: testPassword}
	with := func(a Auth, f func(*Auth)) Auth { f(&a); return a }
	for _, c := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"in-process", Config{}, ""},
		{"in-process with a user", Config{Auth: pw}, "neither --nats-listen nor --nats-url"},
		{"listen without credentials", Config{Listen: "127.0.0.1:0"}, "needs credentials"},
		{"listen with grants only", Config{Listen: "127.0.0.1:0", Auth: Auth{AllowPublish: []string{">"}}}, "needs credentials"},
		{"listen, password", Config{Listen: "127.0.0.1:0", Auth: pw}, ""},
		{"listen, localhost", Config{Listen: "localhost:4222", Auth: pw}, ""},
		{"listen, ::1", Config{Listen: "[::1]:4222", Auth: pw}, ""},
		{"listen, user without password", Config{Listen: "127.0.0.1:0", Auth: Auth{User: "x"}}, "has no password"},
		{"listen, password without user", Config{Listen: "127.0.0.1:0", Auth: Auth{Password: "x"}}, "no user"},
		{"listen, password too long", Config{Listen: "127.0.0.1:0", Auth: Auth{User: "x", Password: strings.Repeat("p", maxPasswordBytes+1)}}, "longer than 1024 bytes"},
		{"listen, bcrypt hash as password", Config{Listen: "127.0.0.1:0", Auth: Auth{User: "x", Password: "$2a$11$abcdefghijklmnopqrstuv"}}, "looks like a bcrypt hash"},
		{"listen, public nkey", Config{Listen: "127.0.0.1:0", Auth: Auth{NKey: pub}}, ""},
		{"listen, nkey seed", Config{Listen: "127.0.0.1:0", Auth: Auth{NKey: string(seed)}}, ""},
		{"listen, bad nkey", Config{Listen: "127.0.0.1:0", Auth: Auth{NKey: "UNOTAKEY"}}, "not a user nkey"},
		{"listen, creds file", Config{Listen: "127.0.0.1:0", Auth: with(pw, func(a *Auth) { a.CredsFile = "x.creds" })}, "only with --nats-url"},
		{"listen, all interfaces without TLS", Config{Listen: ":4222", Auth: pw}, "not a loopback address"},
		{"listen, 0.0.0.0 without TLS", Config{Listen: "0.0.0.0:4222", Auth: pw}, "not a loopback address"},
		{"listen, public name without TLS", Config{Listen: "nats.example:4222", Auth: pw}, "not a loopback address"},
		{"listen, 0.0.0.0 plaintext", Config{Listen: "0.0.0.0:4222", Auth: with(pw, func(a *Auth) { a.Plaintext = true })}, ""},
		{"listen, 0.0.0.0 TLS", Config{Listen: "0.0.0.0:4222", Auth: with(pw, func(a *Auth) { a.TLSCert, a.TLSKey = "c", "k" })}, ""},
		{"listen, cert without key", Config{Listen: "127.0.0.1:0", Auth: with(pw, func(a *Auth) { a.TLSCert = "c" })}, "together"},
		{"listen, CA without cert", Config{Listen: "127.0.0.1:0", Auth: with(pw, func(a *Auth) { a.TLSCA = "ca" })}, "only over TLS"},
		{"listen, bad subject", Config{Listen: "127.0.0.1:0", Auth: with(pw, func(a *Auth) { a.AllowPublish = []string{"a..b"} })}, "not a NATS subject"},
		{"listen, too many subjects", Config{Listen: "127.0.0.1:0", Auth: with(pw, func(a *Auth) { a.AllowSubscribe = make([]string, maxGrants+1) })}, "more than"},
		{"listen, bad address", Config{Listen: "nope", Auth: pw}, "not host:port"},
		{"listen, bad port", Config{Listen: "127.0.0.1:99999", Auth: pw}, "bad port"},
		{"listen and url", Config{Listen: "127.0.0.1:0", URL: "nats://x", Auth: pw}, "not with --nats-url"},
		{"user with a control character", Config{Listen: "127.0.0.1:0", Auth: Auth{User: "a\nb", Password: "p"}}, "no control characters"},
		{"url, no credentials", Config{URL: "nats://x"}, ""},
		{"url, password", Config{URL: "nats://x", Auth: pw}, ""},
		{"url, seed", Config{URL: "nats://x", Auth: Auth{NKey: string(seed)}}, ""},
		{"url, public key only", Config{URL: "nats://x", Auth: Auth{NKey: pub}}, "user nkey seed"},
		{"url, two credentials", Config{URL: "nats://x", Auth: with(pw, func(a *Auth) { a.CredsFile = "x.creds" })}, "give one"},
		{"url, grants", Config{URL: "nats://x", Auth: Auth{AllowSubscribe: []string{">"}}}, "not with --nats-url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q lacks %q", err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), string(seed)) || strings.Contains(err.Error(), testPassword)) {
				t.Fatalf("a secret is in the error: %v", err)
			}
		})
	}
}

// TestListenStartLog: the start says who may connect and with what
// grants, never the password, and warns of nothing on loopback (not
// nats-server's advice about plaintext passwords in configuration files).
func TestListenStartLog(t *testing.T) {
	var logs syncbuf.Buffer
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Auth: Auth{User: testUser, Password: testPassword, AllowSubscribe: []string{"meshd.events.>"}}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := logs.String()
	if strings.Contains(out, "level=WARN") || strings.Contains(out, testPassword) {
		t.Fatalf("start logs:\n%s", out)
	}
	if !strings.Contains(out, "client_user="+testUser) || !strings.Contains(out, "grants_subscribe=1") {
		t.Fatalf("the start does not say who may connect:\n%s", out)
	}
}
