package daemon

import (
	"errors"

	"github.com/meshd/meshd/config"
)

// Config is the daemon's configuration: config.Daemon, whose fields it
// promotes, with the admin listener's checks. Default fills it; Validate
// reports every problem at once.
type Config struct{ config.Daemon }

// DefaultKVCacheBytes is the default Config.KVCacheBytes: 16 MiB per
// service.
const DefaultKVCacheBytes = config.DefaultKVCacheBytes

// Default returns the documented defaults (config.DefaultDaemon).
func Default() Config {
	c := Config{config.DefaultDaemon()}
	c.AdminAddr = defaultAdminAddr
	return c
}

// Validate reports every problem in c, each naming its field: those of
// config.Daemon.Validate, then the admin listener's.
func (c *Config) Validate() error { return errors.Join(c.Daemon.Validate(), c.validateAdmin()) }
