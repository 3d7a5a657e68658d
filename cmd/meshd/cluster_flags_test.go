package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshd/meshd/daemon"
)

// TestClusterFlagsAndFile: the [nats] table sets the cluster flags, the
// command line wins, the password comes from its file (or the
// environment), and no cluster setting leaves the node alone.
func TestClusterFlagsAndFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("route secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.toml")
	conf := "[nats]\ncluster_name = \"file\"\ncluster_listen = \"127.0.0.1:6222\"\ncluster_routes = [\"nats://127.0.0.1:6222\", \"nats://127.0.0.1:6223\"]\n" +
		"cluster_user = \"route\"\ncluster_password_file = \"" + pw + "\"\ncluster_wait = \"7s\"\nreplicas = 2\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var cf clusterFlags
	defineClusterFlags(fs, &cfg, &cf)
	memPages := fs.Uint("memory-pages", 1024, "")
	logLevel, logFormat := fs.String("log-level", "info", ""), fs.String("log-format", "text", "")
	args := []string{"--cluster-name", "flag"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := loadConfigFile(file, fs, args, &cfg, memPages, logFormat, logLevel); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveCluster(&cfg, cf, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	k := cfg.Cluster
	if k == nil || k.Name != "flag" || k.Listen != "127.0.0.1:6222" || len(k.Routes) != 2 || k.Routes[1] != "nats://127.0.0.1:6223" ||
		k.User != "route" || k.Password != "route secret" || k.Wait != 7*time.Second || cfg.Replicas != 2 {
		t.Fatalf("cluster %+v, replicas %d", k, cfg.Replicas)
	}

	cfg = daemon.Default()
	if _, err := resolveCluster(&cfg, clusterFlags{listen: "127.0.0.1:1", user: "u"}, func(k string) string {
		if k == clusterPasswordEnv {
			return "from env"
		}
		return ""
	}); err != nil || cfg.Cluster.Password != "from env" {
		t.Fatalf("err %v, password %q; want it from $%s", err, cfg.Cluster.Password, clusterPasswordEnv)
	}
	cfg = daemon.Default()
	if _, err := resolveCluster(&cfg, clusterFlags{}, os.Getenv); err != nil || cfg.Cluster != nil {
		t.Fatalf("no cluster flag: err %v, cluster %+v; want none", err, cfg.Cluster)
	}
}
