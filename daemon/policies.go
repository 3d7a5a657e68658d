package daemon

import "github.com/meshd/meshd/host/gateway"

// SetGatewayPolicies replaces the gateway's policies (mounts, auth, rate
// limits), all or nothing: on error the running ones keep serving. The
// configuration reload calls it with config.Load(path).Policies().
func (d *Daemon) SetGatewayPolicies(p gateway.Policies) error {
	return d.gateway.SetPolicies(p)
}
