package natsd_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/meshd/meshd/host/natsd"
)

// A server alone keeps one copy of every stream, whatever is asked; a
// node of a cluster of three would answer 3 to Replicas(0).
func ExampleServer_Replicas() {
	dir, err := os.MkdirTemp("", "natsd-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := natsd.Start(ctx, natsd.Config{DataDir: dir}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println(s.Clustered(), s.ClusterSize(), s.Replicas(0), s.Replicas(3))
	// Output: false 1 1 1
}
