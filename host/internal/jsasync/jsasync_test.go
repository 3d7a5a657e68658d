package jsasync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd/natsdtest"
)

// TestWritesWaitForTheStream: a write sent while no server listens on its
// stream's subjects yet (as while a stream is placed or elects a leader)
// is stored once the stream is there, whether an atomic batch or one
// publish; with the stream absent for longer than the wait, it fails as
// not committed.
func TestWritesWaitForTheStream(t *testing.T) {
	js := natsdtest.Server(t).JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	create := func(name, subject string) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject},
			Storage: jetstream.MemoryStorage, AllowAtomicPublish: true})
		if err != nil {
			t.Errorf("create stream %s: %v", name, err)
		}
	}
	msgs := func(subject string) []*nats.Msg {
		return []*nats.Msg{nats.NewMsg(subject), nats.NewMsg(subject), nats.NewMsg(subject)}
	}
	later := time.AfterFunc(300*time.Millisecond, func() { create("LATE", "late.>") })
	defer later.Stop()
	first, err := PublishAtomic(ctx, js, msgs("late.a"))
	if err != nil || first != 1 {
		t.Fatalf("atomic batch sent before its stream existed = %d, %v; want stored at 1", first, err)
	}
	later = time.AfterFunc(300*time.Millisecond, func() { create("LATER", "later.>") })
	defer later.Stop()
	ack, err := js.PublishMsg(ctx, nats.NewMsg("later.a"), RetryOpts()...)
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("publish sent before its stream existed = %v, %v; want stored at 1", ack, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if _, err := PublishAtomic(short, js, msgs("never.a")); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("atomic batch to no stream = %v, want ErrNotCommitted", err)
	}
}

// TestBatchResentWhenItsStreamMissedItsStart: a stream that begins to
// listen (is created, or gets a new leader) after an atomic batch's first
// messages went by but before its commit answers the commit "incomplete"
// and stores none of it; the batch is sent again and stored whole, once.
func TestBatchResentWhenItsStreamMissedItsStart(t *testing.T) {
	js := natsdtest.Server(t).JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sends := 0
	testHookBeforeCommit = func() {
		sends++
		if sends == 1 {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MID", Subjects: []string{"mid.>"},
				Storage: jetstream.MemoryStorage, AllowAtomicPublish: true}); err != nil {
				t.Errorf("create stream: %v", err)
			}
		}
	}
	t.Cleanup(func() { testHookBeforeCommit = nil })
	msgs := []*nats.Msg{nats.NewMsg("mid.a"), nats.NewMsg("mid.b"), nats.NewMsg("mid.c")}
	for i, m := range msgs {
		m.Data = []byte{byte('0' + i)}
	}
	first, err := PublishAtomic(ctx, js, msgs)
	if err != nil || first != 1 {
		t.Fatalf("batch whose stream appeared before its commit = %d, %v; want stored at 1", first, err)
	}
	if sends != 2 {
		t.Errorf("batch sent %d times, want 2 (the commit answered incomplete once)", sends)
	}
	s, err := js.Stream(ctx, "MID")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 || info.State.LastSeq != 3 {
		t.Fatalf("stream holds %d messages, last %d; want the batch once: 3, 3", info.State.Msgs, info.State.LastSeq)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil || string(m.Data) != string(rune('0'+seq-1)) {
			t.Fatalf("message %d = %v, %v; want data %q", seq, m, err, rune('0'+seq-1))
		}
	}
}
