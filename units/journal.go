package units

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Runner runs a command and returns its standard output. Journal uses it
// for journalctl, so tests can answer in its place.
type Runner interface {
	Output(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands on this host.
type ExecRunner struct{}

// Output runs name with args and returns its standard output. A failure
// carries the command's standard error.
func (ExecRunner) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// A child holding the pipes open must not keep us waiting once the
	// context is done.
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return out, err
	}
	return out, nil
}

// Journal returns the last n lines the journal holds for the unit, oldest
// first, as `journalctl -u NAME -n N -o short-iso --no-pager` prints them.
func (m *Manager) Journal(ctx context.Context, name string, n int) ([]string, error) {
	if !validUnitName(name) {
		return nil, fmt.Errorf("journal %s: invalid unit name", name)
	}
	if n <= 0 {
		return nil, errors.New("journal " + name + ": line count must be positive")
	}
	jctx, cancel := context.WithTimeout(ctx, m.opts.JournalTimeout)
	defer cancel()
	out, err := m.opts.Runner.Output(jctx, "journalctl",
		"-u", name, "-n", strconv.Itoa(n), "-o", "short-iso", "--no-pager", "--quiet")
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", name, err)
	}
	return journalLines(out), nil
}

// journalLines splits journalctl's output into lines, dropping its own
// notes ("-- No entries --", "-- Boot … --").
func journalLines(out []byte) []string {
	var lines []string
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			continue
		}
		lines = append(lines, line)
	}
	return lines
}
