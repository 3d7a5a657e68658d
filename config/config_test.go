package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/gateway"
)

func TestExampleFile(t *testing.T) {
	f, err := Load("../examples/gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	if f.RequestTimeout == nil || *f.RequestTimeout != 10*time.Second || f.Server.ReadHeaderTimeout != 5*time.Second {
		t.Fatalf("durations: %+v %+v", f.RequestTimeout, f.Server)
	}
	if f.Plugins != nil {
		t.Fatalf("plugins set by a file that does not set it: %q", *f.Plugins)
	}
	p := f.Policies()
	if len(p.Policy) != 1 || p.Policy[0].Route != "POST /orders" || p.Policy[0].Rate != 5 || p.Policy[0].Burst != 5 ||
		p.Auth["keys"].Keys["demo-key"] != "demo" {
		t.Fatalf("policies %+v", p)
	}
	g := gateway.New(gateway.Config{}, nil, nil)
	defer g.Close()
	if err := g.SetPolicies(p); err != nil {
		t.Fatalf("the gateway refuses the example: %v", err)
	}
}

const badFile = `# line 1
http = ""
pool_max = 0
colour = "blue"

[server]
idle_timeout = "-1s"
cert_file = "/nonexistent/cert.pem"

[auth.keys]
type = "api_key"
keys = { "k" = "c" }
secret = "x"

[auth.tok]
type = "jwt"

[[policy]]
route = "POST /orders"
auth = "keys"

[[policy]]
service = "order"
auth = "nope"
rate = 2
limit = 3

[[mount]]
prefix = "api"
service = "order"
`

func TestEveryProblemWithLines(t *testing.T) {
	_, err := Parse("bad.toml", []byte(badFile))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error", err, err)
	}
	want := []Problem{
		{Key: "http", Line: 2},
		{Key: "pool_max", Line: 3},
		{Key: "colour", Line: 4, Msg: "unknown key"},
		{Key: "server.idle_timeout", Line: 7},
		{Key: "server.cert_file", Line: 8},
		{Key: "auth.keys", Line: 10},
		{Key: "auth.tok", Line: 15},
		{Key: "policy[1].auth", Line: 24},
		{Key: "policy[1].burst", Line: 22}, // not in the file: its table's line
		{Key: "policy[1].limit", Line: 26, Msg: "unknown key"},
		{Key: "mount[0].prefix", Line: 29},
	}
	for _, w := range want {
		found := false
		for _, p := range e.Problems {
			if p.Key == w.Key && p.Line == w.Line && (w.Msg == "" || p.Msg == w.Msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %+v in:\n%v", w, err)
		}
	}
	if len(e.Problems) < len(want) {
		t.Errorf("%d problems, want at least %d", len(e.Problems), len(want))
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "bad.toml: ") || !strings.Contains(msg, "line 4: colour: unknown key") {
		t.Errorf("message:\n%s", msg)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse("x.toml", []byte("http = \":8080\"\n[server\nidle_timeout = 1\n"))
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Line < 2 {
		t.Fatalf("error %v", err)
	}
}

func TestTypeErrorHasLine(t *testing.T) {
	_, err := Parse("x.toml", []byte("http = \":8080\"\n\n[[policy]]\nservice = \"a\"\nrate = \"fast\"\n"))
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 {
		t.Fatalf("error %v", err)
	}
	if e.Problems[0].Line != 5 {
		t.Errorf("line %d, want 5: %v", e.Problems[0].Line, err)
	}
}

func TestDurationsAndNumbers(t *testing.T) {
	f, err := Parse("x.toml", []byte("drain_timeout = \"3s\"\nmax_body_bytes = 10\nmemory_pages = 16\n[server]\nmax_header_bytes = 4096\n"))
	if err != nil {
		t.Fatal(err)
	}
	if *f.DrainTimeout != 3*time.Second || *f.MaxBodyBytes != 10 || *f.MemoryPages != 16 || f.Server.MaxHeaderBytes != 4096 {
		t.Fatalf("%+v", f)
	}
}

func TestNATSKeys(t *testing.T) {
	f, err := Parse("nats.toml", []byte(`nats_listen = "127.0.0.1:4222"
nats_user = "tool"
nats_password_file = "/etc/meshd/nats.pw"
nats_nkey_file = "/etc/meshd/tool.nk"
nats_tls_cert = "c.pem"
nats_tls_key = "k.pem"
nats_tls_ca = "ca.pem"
nats_allow_publish = []
nats_allow_subscribe = ["meshd.events.>", "_INBOX.>"]
nats_plaintext = true
`))
	if err != nil {
		t.Fatal(err)
	}
	if *f.NATSUser != "tool" || *f.NATSPasswordFile != "/etc/meshd/nats.pw" || *f.NATSNKeyFile != "/etc/meshd/tool.nk" ||
		*f.NATSTLSCert != "c.pem" || *f.NATSTLSKey != "k.pem" || *f.NATSTLSCA != "ca.pem" || !*f.NATSPlaintext {
		t.Fatalf("decoded %+v", f)
	}
	if f.NATSAllowPublish == nil || len(f.NATSAllowPublish) != 0 || strings.Join(f.NATSAllowSubscribe, " ") != "meshd.events.> _INBOX.>" {
		t.Fatalf("grants: publish %#v, subscribe %#v", f.NATSAllowPublish, f.NATSAllowSubscribe)
	}

	_, err = Parse("nats.toml", []byte("nats_user = \"\"\nnats_allow_subscribe = [\"a\", \" \"]\nnats_password = \"inline\"\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	for _, want := range []string{"line 1: nats_user: must not be empty", "line 2: nats_allow_subscribe[1]: must not be empty", "line 3: nats_password: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestSyncValues: "lazy" names the default the docs call lazy; anything
// but lazy, always or empty is refused.
func TestSyncValues(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "lazy": true, "always": true, "fsync": false, "Always": false} {
		_, err := Parse("x.toml", []byte("sync = \""+v+"\"\n"))
		if (err == nil) != ok {
			t.Errorf("sync = %q: %v, want accepted %v", v, err, ok)
		}
	}
}
