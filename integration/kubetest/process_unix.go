//go:build unix

package kubetest

import (
	"os"
	"syscall"
)

// killGroup sends SIGKILL to the process group p leads.
func killGroup(p *os.Process) error {
	err := syscall.Kill(-p.Pid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return os.ErrProcessDone
	}
	return err
}
