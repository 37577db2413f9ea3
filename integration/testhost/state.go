package testhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// envState is what an environment records on disk, so that another process
// can attach to it (cmd/testhosts) or tear it down after its owner died.
type envState struct {
	ID string `json:"id"`
	// Owner is the process whose exit ends the environment; nil for a
	// detached environment, which lasts until torn down explicitly.
	Owner *procRef `json:"owner,omitempty"`
	// BootID is the machine's boot ID when the environment was made: after
	// a reboot nothing of it runs any more.
	BootID     string       `json:"boot_id"`
	Subnet     int          `json:"subnet"` // hosts are 10.77.Subnet.x
	Rootfs     string       `json:"rootfs"`
	Prefix     string       `json:"prefix"`
	BeforeBoot string       `json:"before_boot,omitempty"`
	Hosts      []*hostState `json:"hosts"`
}

// hostState is what an environment records about one of its hosts.
type hostState struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	Addr  string `json:"addr"`
	// Segment is the host's network segment.
	Segment Segment `json:"segment,omitempty"`
	// Init is the host's systemd, PID 1 inside; nil while the host is stopped.
	Init         *procRef `json:"init,omitempty"`
	Disconnected bool     `json:"disconnected,omitempty"`
}

// procRef names a process in a way that survives PID reuse: a PID alone
// could, after the process exits, name an unrelated process of the machine.
type procRef struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // start time in clock ticks since boot
}

// processRef returns a reference to the running process pid.
func processRef(pid int) (procRef, error) {
	start, err := procStartTime(pid)
	if err != nil {
		return procRef{}, err
	}
	return procRef{PID: pid, Start: start}, nil
}

// alive reports whether the referenced process still runs.
func (p *procRef) alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	start, err := procStartTime(p.PID)
	return err == nil && start == p.Start
}

// procStartTime reads field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// bootID returns the machine's boot ID, which changes at every boot.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// live reports whether the environment is still in use, by a live owner or,
// when detached, by nobody in particular until it is torn down.
func (s *envState) live(currentBootID string) bool {
	if s.BootID != currentBootID {
		return false
	}
	return s.Owner == nil || s.Owner.alive()
}

// Paths of the state directory.
func envsDir(stateDir string) string        { return filepath.Join(stateDir, "envs") }
func envDir(stateDir, id string) string     { return filepath.Join(stateDir, "envs", id) }
func statePath(dir string) string           { return filepath.Join(dir, "state.json") }
func hostDir(envDir, name string) string    { return filepath.Join(envDir, "hosts", name) }
func globalLockPath(stateDir string) string { return filepath.Join(stateDir, "lock") }
func consoleLogPath(envDir, name string) string {
	return filepath.Join(hostDir(envDir, name), "console.log")
}

// loadState reads the state file of the environment in dir.
func loadState(dir string) (*envState, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s envState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", statePath(dir), err)
	}
	return &s, nil
}

// saveState writes the state file of the environment in dir atomically.
func saveState(dir string, s *envState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, statePath(dir)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// withLock runs fn while holding an exclusive flock on path. Waiting for the
// lock is bounded: the sections it guards are short.
func withLock(ctx context.Context, path string, fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer f.Close()
	err = poll(ctx, "lock "+path, 2*time.Minute, 20*time.Millisecond, func() (bool, string, error) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, "held by another process", nil
		}
		return err == nil, "", err
	})
	if err != nil {
		return err
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}
