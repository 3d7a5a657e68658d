//go:build !wasip1

package guest

func (stubHost) call(string, []byte, int32) int32 { return fail() }
func (stubHost) callResult([]byte) int32          { return fail() }

func (stubHost) callRetryAfter() int64 { return 0 }
