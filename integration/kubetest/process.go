package kubetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// process is a child run in its own process group, so that stopping it
// also stops whatever it started.
type process struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	log    *os.File
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, set before done is closed
}

// startProcess starts bin with args, its stdout and stderr appended to
// logPath.
func startProcess(bin string, args []string, logPath string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = os.Environ()
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		log.Close()
		return nil, err
	}
	p := &process{cmd: cmd, cancel: cancel, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop kills the process group and waits, boundedly, for the process.
func (p *process) stop() {
	p.cancel()
	// Kill the group even when the leader has exited already: a child it
	// left behind would outlive the test.
	_ = killGroup(p.cmd.Process)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "kubetest: process %d did not exit 10s after SIGKILL\n", p.cmd.Process.Pid)
	}
	p.log.Close()
}
