//go:build !wasip1

package guest

func (stubHost) publishDelayed(string, []byte, int32) int32 { return fail() }
func (stubHost) configGet(string, []byte) int32             { return fail() }
