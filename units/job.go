package units

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// JobResult is the result systemd reports for a finished job.
type JobResult string

// The job results of systemd's JobRemoved signal.
const (
	JobDone       JobResult = "done"
	JobFailed     JobResult = "failed"     // the unit failed to start (or stop)
	JobTimeout    JobResult = "timeout"    // the unit's start or stop timeout hit
	JobCanceled   JobResult = "canceled"   // another job replaced this one
	JobDependency JobResult = "dependency" // a unit this one requires failed
	JobSkipped    JobResult = "skipped"    // the job did not apply to the unit's state
)

// JobError is a start, stop or restart job that did not end in "done".
type JobError struct {
	Unit   string
	Op     string // "start", "stop" or "restart"
	Result JobResult
	// Journal holds the unit's last journal lines, read when the job
	// failed, timed out or hit a failed dependency.
	Journal []string
}

func (e *JobError) Error() string {
	msg := fmt.Sprintf("%s %s: job %s", e.Op, e.Unit, e.Result)
	switch e.Result {
	case JobFailed, JobTimeout:
		msg += "; see journalctl -u " + e.Unit
	case JobDependency:
		msg += "; a unit it requires failed"
	}
	return msg
}

// jobCall is one of the *dbus.Conn methods that enqueue a job.
type jobCall func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// Start starts the unit and waits for the job to finish. A job that ends
// other than "done" is a *JobError; a job still running when ctx or the
// JobTimeout expires is an error naming the unit and the op that wraps the
// context's error.
func (m *Manager) Start(ctx context.Context, name string) error {
	return m.runJob(ctx, "start", name, m.conn.StartUnitContext)
}

// Restart restarts the unit (starting it if it is not running) and waits
// for the job like Start.
func (m *Manager) Restart(ctx context.Context, name string) error {
	return m.runJob(ctx, "restart", name, m.conn.RestartUnitContext)
}

// Stop stops the unit and waits for the job like Start.
func (m *Manager) Stop(ctx context.Context, name string) error {
	return m.runJob(ctx, "stop", name, m.conn.StopUnitContext)
}

func (m *Manager) runJob(ctx context.Context, op, name string, call jobCall) error {
	if !validUnitName(name) {
		return fmt.Errorf("%s %s: invalid unit name", op, name)
	}
	jctx, cancel := context.WithTimeout(ctx, m.opts.JobTimeout)
	defer cancel()
	// go-systemd sends the result while holding the lock of its signal
	// dispatcher: the channel has room for it, so a caller that gave up
	// waiting cannot block the connection.
	results := make(chan string, 1)
	cctx, ccancel := m.call(jctx)
	_, err := call(cctx, name, "replace", results)
	ccancel()
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	var result JobResult
	select {
	case r := <-results:
		result = JobResult(r)
	case <-jctx.Done():
		return fmt.Errorf("%s %s: job not finished: %w", op, name, jctx.Err())
	}
	if result == JobDone {
		return nil
	}
	jerr := &JobError{Unit: name, Op: op, Result: result}
	switch result {
	case JobFailed, JobTimeout, JobDependency:
		jerr.Journal = m.journalForError(ctx, name)
	}
	return jerr
}

// journalForError returns the unit's last journal lines, or none if
// journalctl fails: the job's error matters more than the journal's.
func (m *Manager) journalForError(ctx context.Context, name string) []string {
	jctx, cancel := context.WithTimeout(ctx, m.opts.JournalTimeout)
	defer cancel()
	// The job result can arrive before journald has read the unit's last
	// output from its stream; --sync waits for journald to catch up.
	_, _ = m.opts.Runner.Output(jctx, "journalctl", "--sync")
	lines, _ := m.Journal(jctx, name, m.opts.JournalLines)
	return lines
}

// RestartIfChanged restarts, one after another, the units in
// changes.Changed() that are running or enabled, and returns the ones it
// restarted. Units that are neither (never started, stopped on purpose and
// disabled) are left alone. It restarts all it can and returns the errors
// together.
func (m *Manager) RestartIfChanged(ctx context.Context, changes Changes) ([]string, error) {
	var (
		restarted []string
		errs      []error
	)
	for _, name := range changes.Changed() {
		if slices.Contains(restarted, name) {
			continue
		}
		st, err := m.Status(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.runningOrStarting() && st.UnitFileState != "enabled" {
			continue
		}
		if err := m.Restart(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		restarted = append(restarted, name)
	}
	return restarted, errors.Join(errs...)
}

// JobWait bounds how long the agent waits for one start, stop or restart
// job of a unit it runs.
const JobWait = 2 * time.Minute
