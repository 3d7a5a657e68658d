package kv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
)

// BenchmarkApply: an Apply of two writes (what a read-model projection
// makes) as one atomic batch, against ApplyEach of the same two writes
// (sent together, stored one by one: how Apply sent them before batches),
// with and without fsync on every write.
func BenchmarkApply(b *testing.B) {
	for _, sync := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		ns, err := natsd.Start(ctx, natsd.Config{DataDir: b.TempDir(), Sync: sync}, nil)
		if err != nil {
			b.Fatal(err)
		}
		st, err := Open(ctx, ns.JetStream(), "bench", Options{})
		if err != nil {
			b.Fatal(err)
		}
		ops := func(i int) []Op {
			return []Op{{Key: fmt.Sprint("payment:", i), Value: make([]byte, 200)}, {Key: fmt.Sprint("by-order:", i), Value: make([]byte, 40)}}
		}
		b.Run(fmt.Sprint("atomic/sync=", sync), func(b *testing.B) {
			for i := range b.N {
				if err := st.Apply(ctx, ops(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprint("each/sync=", sync), func(b *testing.B) {
			for i := range b.N {
				if err := st.ApplyEach(ctx, ops(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		_ = ns.Close()
		cancel()
	}
}
