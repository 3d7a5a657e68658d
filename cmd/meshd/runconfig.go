package main

import (
	"flag"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/daemon"
)

// loadConfigFile applies the configuration file at path to cfg (and to the
// flag-only settings), then parses args again so that the flags given on
// the command line override the file.
func loadConfigFile(path string, fs *flag.FlagSet, args []string, cfg *daemon.Config, memPages *uint, logFormat, logLevel *string) error {
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	setStr := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	setStr(&cfg.PluginDir, f.Plugins)
	setStr(&cfg.DataDir, f.Data)
	setStr(&cfg.HTTPAddr, f.HTTP)
	setStr(&cfg.Node, f.Node)
	setStr(&cfg.NATSURL, f.NATSURL)
	setStr(&cfg.NATSListen, f.NATSListen)
	setStr(&cfg.Sync, f.Sync)
	a := &cfg.NATSAuth
	setStr(&a.User, f.NATSUser)
	setStr(&a.CredsFile, f.NATSCredsFile)
	setStr(&a.TLSCert, f.NATSTLSCert)
	setStr(&a.TLSKey, f.NATSTLSKey)
	setStr(&a.TLSCA, f.NATSTLSCA)
	if f.NATSAllowPublish != nil {
		a.AllowPublish = f.NATSAllowPublish
	}
	if f.NATSAllowSubscribe != nil {
		a.AllowSubscribe = f.NATSAllowSubscribe
	}
	if f.NATSPlaintext != nil {
		a.Plaintext = *f.NATSPlaintext
	}
	// The files holding secrets are flag-only settings of meshd run: the
	// file sets those flags, the command line sets them again below.
	for name, v := range map[string]*string{"nats-password-file": f.NATSPasswordFile, "nats-nkey-file": f.NATSNKeyFile} {
		if v == nil {
			continue
		}
		if err := fs.Set(name, *v); err != nil {
			return err
		}
	}
	if err := applyClusterFile(fs, f.NATS); err != nil {
		return err
	}
	setStr(logFormat, f.LogFormat)
	setStr(&cfg.AdminAddr, f.Admin)
	setStr(&cfg.AdminToken, f.AdminToken)
	if f.AdminPublic != nil {
		cfg.AdminPublic = *f.AdminPublic
	}
	setStr(logLevel, f.LogLevel)
	if f.CallTimeout != nil {
		cfg.Module.CallTimeout = *f.CallTimeout
	}
	if f.IdleRelease != nil {
		cfg.Module.IdleRelease = *f.IdleRelease
	}
	if f.RequestTimeout != nil {
		cfg.RequestTimeout = *f.RequestTimeout
	}
	if f.DrainTimeout != nil {
		cfg.DrainTimeout = *f.DrainTimeout
	}
	if f.MaxBodyBytes != nil {
		cfg.MaxBodyBytes = *f.MaxBodyBytes
	}
	if f.MemoryPages != nil {
		*memPages = uint(*f.MemoryPages)
	}
	if f.PoolMin != nil {
		cfg.Module.PoolMin = *f.PoolMin
	}
	if f.PoolMax != nil {
		cfg.Module.PoolMax = *f.PoolMax
	}
	if f.KVCacheBytes != nil {
		cfg.KVCacheBytes = *f.KVCacheBytes
	}
	cfg.Server = f.Server
	cfg.Gateway = f.Policies()
	// Flags given on the command line win over the file.
	return fs.Parse(args)
}
