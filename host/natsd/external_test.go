package natsd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/natsd/natsdtest"
)

// TestExternalReplicas: against an external server, Replicas(0) is what
// its JetStream places: 3 on a cluster of three (found by a probe stream,
// deleted after), 1 on a standalone server; a count asked for is taken as
// asked. Clustered says which.
func TestExternalReplicas(t *testing.T) {
	const user, password = "meshd", "a password for the test"
	auth := natsd.Auth{User: user, Password: password, AllowPublish: []string{">"}, AllowSubscribe: []string{">"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfgs := natsdtest.Configs(t, natsdtest.FreePorts(t, 3))
	for i := range cfgs {
		cfgs[i].Listen, cfgs[i].Auth = "127.0.0.1:0", auth
	}
	servers, err := natsdtest.StartAll(ctx, cfgs)
	if err != nil {
		t.Fatalf("start a 3-node cluster: %v", err)
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	standalone, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: auth}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer standalone.Close()

	for _, tc := range []struct {
		name      string
		url       string
		asked     int
		clustered bool
		want      int
	}{
		{"a cluster of three, automatic", servers[1].ClientURL(), 0, true, 3},
		{"a cluster of three, 1 asked", servers[1].ClientURL(), 1, true, 1},
		{"a standalone server, automatic", standalone.ClientURL(), 0, false, 1},
		{"a standalone server, 3 asked", standalone.ClientURL(), 3, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := natsd.Start(ctx, natsd.Config{URL: tc.url, Auth: natsd.Auth{User: user, Password: password}, Replicas: tc.asked}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Replicas(tc.asked); got != tc.want || s.Clustered() != tc.clustered {
				t.Fatalf("Replicas(%d) = %d, Clustered %v; want %d, %v", tc.asked, got, s.Clustered(), tc.want, tc.clustered)
			}
			for name := range s.JetStream().StreamNames(ctx).Name() {
				if strings.Contains(name, "probe") {
					t.Fatalf("the probe's stream %s is left", name)
				}
			}
		})
	}
}
