package natsd

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/nats-io/nats.go"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestEmbeddedNoListen(t *testing.T) {
	s := start(t, Config{DataDir: t.TempDir(), Name: "n1"})
	if got := s.ClientURL(); got != "" {
		t.Fatalf("ClientURL = %q, want empty", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := s.JetStream().AccountInfo(ctx)
	if err != nil {
		t.Fatalf("AccountInfo: %v", err)
	}
	if info == nil {
		t.Fatal("nil account info")
	}
	sub, err := s.Conn().SubscribeSync("x.y")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Conn().Publish("x.y", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("NextMsg = %v, %v", m, err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !s.Conn().IsClosed() {
		t.Fatal("connection not closed")
	}
}

func TestStartRequiresDataDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{}, nil); err == nil {
		t.Fatal("Start without DataDir succeeded")
	}
}

func TestBadListen(t *testing.T) {
	if _, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "nope"}, nil); err == nil {
		t.Fatal("bad listen address accepted")
	}
}

// TestSlowConsumerLogged: a subscription that falls behind loses messages
// (the client drops them); meshd's connection logs it.
func TestSlowConsumerLogged(t *testing.T) {
	var logs syncbuf.Buffer
	s, err := Start(context.Background(), Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch := make(chan *nats.Msg, 1) // holds one; the rest are dropped
	sub, err := s.Conn().ChanSubscribe("slow.test", ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for range 3 {
		if err := s.Conn().Publish("slow.test", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "slow consumer") {
		if time.Now().After(deadline) {
			t.Fatalf("no slow consumer logged; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "subject=slow.test") {
		t.Fatalf("the log does not name the subject:\n%s", logs.String())
	}
}
