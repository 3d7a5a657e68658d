package natsd

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// BenchmarkStart measures Start and Close of the embedded server: in-process
// only, and with a client port whose clients authenticate by password
// (compared as given, in constant time) or nkey.
func BenchmarkStart(b *testing.B) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"in-process", Config{}},
		{"listen-password", Config{Listen: "127.0.0.1:0", Auth: Auth{User: "tool", Password: "pw"}}},
		{"listen-nkey", Config{Listen: "127.0.0.1:0", Auth: Auth{NKey: pub}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cfg := c.cfg
				cfg.DataDir = b.TempDir()
				s, err := Start(context.Background(), cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnect measures a client's connection to the client port, by
// password (a constant-time comparison on the server) and by nkey (a
// signature).
func BenchmarkConnect(b *testing.B) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	s, err := Start(context.Background(), Config{DataDir: b.TempDir(), Listen: "127.0.0.1:0",
		Auth: Auth{User: "tool", Password: "pw", NKey: pub}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		name string
		opt  nats.Option
	}{
		{"password", nats.UserInfo("tool", "pw")},
		{"nkey", nats.Nkey(pub, kp.Sign)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				nc, err := nats.Connect(s.ClientURL(), c.opt)
				if err != nil {
					b.Fatal(err)
				}
				nc.Close()
			}
		})
	}
}
