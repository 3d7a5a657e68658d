package clusterbench

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the node when the process that
// started it ends: a benchmark binary that panics or times out leaves no
// meshd running.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
