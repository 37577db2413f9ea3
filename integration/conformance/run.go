// Package conformance runs the upstream Kubernetes end-to-end suite
// (e2e.test and its ginkgo runner, built by tools/e2e/build.sh) against a
// cluster on test hosts, and reads its JUnit report into a summary.
//
// The suite runs on this machine, which reaches the test hosts' network
// (their gateway is its own address there): it talks to the API server
// named in the kubeconfig, runs kubectl for the kubectl tests, and reaches
// the pods only through the API server (exec, proxy), as the conformance
// suite does from a pod. `make conformance` (integration/cmd/conformance)
// runs the whole [Conformance] set; the e2e test TestPackagePath a
// focused part of it.
package conformance

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Pass is one run of the suite.
type Pass struct {
	// Name names the pass's report: <ReportDir>/<Name>/junit_01.xml.
	Name string
	// Focus and Skip are ginkgo's regular expressions over the specs'
	// full names.
	Focus, Skip string
	// Procs is the number of parallel ginkgo processes (1: serial).
	Procs int
	// Timeout ends the pass (ginkgo's --timeout).
	Timeout time.Duration
}

// Run is where and how the suite runs.
type Run struct {
	// SuiteDir holds e2e.test and ginkgo (tools/e2e/build.sh prints it).
	SuiteDir string
	// Kubeconfig is an admin kubeconfig on this machine; Kubectl the
	// kubectl binary the kubectl tests run.
	Kubeconfig, Kubectl string
	// ReportDir receives each pass's report directory.
	ReportDir string
	// Out receives the suite's progress.
	Out io.Writer
}

// Flags are the suite's flags for a cluster the agent built: no cloud
// provider, every node expected Ready and schedulable, the agent's
// cluster domain.
func (r Run) flags(reportDir string) []string {
	return []string{
		"--kubeconfig=" + r.Kubeconfig,
		"--kubectl-path=" + r.Kubectl,
		"--provider=skeleton",
		"--report-dir=" + reportDir,
		"--dns-domain=cluster.local",
		"--allowed-not-ready-nodes=0",
		// The dump of every namespace's events and pods after a failure
		// goes into the report; the test hosts' logs stay on them.
		"--dump-logs-on-failure=true",
	}
}

// Pass runs one pass of the suite and returns its summary. A failed spec
// is not an error (it is in the summary); an error is a suite that did
// not run or wrote no report.
func (r Run) Pass(ctx context.Context, p Pass) (Summary, error) {
	dir := filepath.Join(r.ReportDir, p.Name)
	if err := os.RemoveAll(dir); err != nil {
		return Summary{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, err
	}
	if p.Procs < 1 {
		p.Procs = 1
	}
	args := []string{
		"--procs=" + strconv.Itoa(p.Procs),
		"--timeout=" + p.Timeout.String(),
		"--focus=" + p.Focus,
		"--no-color", "--silence-skips", "--poll-progress-after=5m",
	}
	if p.Skip != "" {
		args = append(args, "--skip="+p.Skip)
	}
	args = append(args, filepath.Join(r.SuiteDir, "e2e.test"), "--")
	args = append(args, r.flags(dir)...)
	// The ginkgo timeout ends the suite; the context is the backstop.
	cctx, cancel := context.WithTimeout(ctx, p.Timeout+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(r.SuiteDir, "ginkgo"), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = r.Out, r.Out
	// Stopped (Ctrl-C, the backstop), ginkgo is interrupted, not
	// killed: it stops its processes, runs the cleanup and writes the
	// report; a minute later it is killed.
	// It runs in a process group of its own, signalled as a whole as a
	// terminal's Ctrl-C would be: ginkgo's CLI leaves the interrupt to
	// its e2e.test processes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = time.Minute
	fmt.Fprintf(r.Out, "==> %s: ginkgo %s\n", p.Name, strings.Join(args, " "))
	runErr := cmd.Run()
	s, err := ReadJUnit(filepath.Join(dir, "junit_01.xml"), p)
	if err != nil {
		return s, fmt.Errorf("%s: no report (%v); the suite ended with: %v", p.Name, err, runErr)
	}
	return s, nil
}
