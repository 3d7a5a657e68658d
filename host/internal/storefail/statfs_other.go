//go:build !linux

package storefail

import "errors"

// statfs is not implemented here: the Health learns of a full disk from
// failed writes only.
func statfs(string) (free, total uint64, err error) {
	return 0, 0, errors.New("storefail: free space unknown on this system")
}
