package main

import (
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/daemon"
	"github.com/meshd/meshd/host/natsd"
)

// clusterPasswordEnv names the environment variable that carries the
// route password when no --cluster-password-file is given.
const clusterPasswordEnv = "MESHD_CLUSTER_PASSWORD"

// clusterFlags are meshd run's cluster settings, made into cfg.Cluster
// once the flags and the configuration file are merged.
type clusterFlags struct {
	name, listen, user, passwordFile string
	routes                           subjectList
	wait                             time.Duration
}

// defineClusterFlags defines the cluster flags of meshd run on fs.
func defineClusterFlags(fs *flag.FlagSet, cfg *daemon.Config, cf *clusterFlags) {
	fs.StringVar(&cf.name, "cluster-name", "", "the NATS cluster's name, the same on every node (default "+natsd.DefaultClusterName+")")
	fs.StringVar(&cf.listen, "cluster-listen", "", "make the embedded NATS server a cluster node taking routes from the other nodes on this address (host:port); beyond loopback needs --cluster-user and TLS (--nats-tls-cert, --nats-tls-key, --nats-tls-ca) or --nats-plaintext")
	fs.Var(&cf.routes, "cluster-routes", "comma-separated cluster listeners of the nodes to join (nats://host:port; listing this node's own is harmless)")
	fs.StringVar(&cf.user, "cluster-user", "", "user the nodes present to each other's cluster listener, the same on every node; optional when the listener and every route are on loopback")
	fs.StringVar(&cf.passwordFile, "cluster-password-file", "", "file holding the --cluster-user password (one line); default $"+clusterPasswordEnv)
	fs.DurationVar(&cf.wait, "cluster-wait", 0, "how long the start waits for a majority of the cluster (default 30s)")
	fs.IntVar(&cfg.Replicas, "replicas", 0, "copies of the event streams and key-value buckets (0: 3 in a cluster of 3 or more nodes up at the start, else as many as are up; with --nats-url the most, up to 3, the cluster places at the start; 1 alone)")
}

// applyClusterFile sets the cluster flags the configuration file's [nats]
// table sets (the command line sets them again after).
func applyClusterFile(fs *flag.FlagSet, n config.NATS) error {
	set := map[string]string{}
	for name, v := range map[string]*string{"cluster-name": n.ClusterName, "cluster-listen": n.ClusterListen,
		"cluster-user": n.ClusterUser, "cluster-password-file": n.ClusterPasswordFile} {
		if v != nil {
			set[name] = *v
		}
	}
	if n.ClusterRoutes != nil {
		set["cluster-routes"] = strings.Join(n.ClusterRoutes, ",")
	}
	if n.ClusterWait != nil {
		set["cluster-wait"] = n.ClusterWait.String()
	}
	if n.Replicas != nil {
		set["replicas"] = strconv.Itoa(*n.Replicas)
	}
	for name, v := range set {
		if err := fs.Set(name, v); err != nil {
			return err
		}
	}
	return nil
}

// resolveCluster makes cfg.Cluster of the cluster flags when any is given
// (natsd validates them), reading the route password from
// --cluster-password-file, else from $MESHD_CLUSTER_PASSWORD when a user
// is given.
func resolveCluster(cfg *daemon.Config, cf clusterFlags, getenv func(string) string) (warn []string, err error) {
	if cf.name == "" && cf.listen == "" && len(cf.routes) == 0 && cf.user == "" && cf.passwordFile == "" && cf.wait == 0 {
		return nil, nil
	}
	k := &natsd.Cluster{Name: cf.name, Listen: cf.listen, Routes: cf.routes, User: cf.user, Wait: cf.wait}
	switch {
	case cf.passwordFile != "":
		pw, w, err := readSecretFile("--cluster-password-file", cf.passwordFile)
		if err != nil {
			return nil, err
		}
		k.Password, warn = pw, w
	case cf.user != "" && getenv(clusterPasswordEnv) != "":
		k.Password = strings.TrimSpace(getenv(clusterPasswordEnv))
	}
	cfg.Cluster = k
	return warn, nil
}
