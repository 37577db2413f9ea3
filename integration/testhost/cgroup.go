package testhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Every host lives in its own cgroup, ecomtest/<env>/<host>, in every
// hierarchy of the machine. The host's cgroup namespace is rooted there, so
// its systemd (and later its kubelet) sees a cgroup tree of its own, and the
// systemds of several hosts never share, or kill, each other's units.
const (
	cgroupRoot = "/sys/fs/cgroup"
	cgroupTop  = "ecomtest"
)

// hierarchy is one cgroup hierarchy mounted on the machine, such as
// /sys/fs/cgroup/cpu (v1, options "cpu") or /sys/fs/cgroup/unified (v2).
type hierarchy struct {
	Point  string
	FSType string // cgroup or cgroup2
	Opts   string // v1 only: controllers and name=, as mount options
}

func (h hierarchy) isCpuset() bool {
	return h.FSType == "cgroup" && slices.Contains(strings.Split(h.Opts, ","), "cpuset")
}

// hierarchies lists the machine's cgroup hierarchies under /sys/fs/cgroup.
func hierarchies() ([]hierarchy, error) {
	ms, err := mounts()
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	var hs []hierarchy
	for _, m := range ms {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		if m.Point != cgroupRoot && !strings.HasPrefix(m.Point, cgroupRoot+"/") {
			continue
		}
		var opts []string
		for o := range strings.SplitSeq(m.SuperOpts, ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		h := hierarchy{Point: m.Point, FSType: m.FSType}
		if m.FSType == "cgroup" {
			h.Opts = strings.Join(opts, ",")
		}
		hs = slices.DeleteFunc(hs, func(o hierarchy) bool { return o.Point == h.Point })
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("cgroups: no cgroup hierarchy mounted under %s", cgroupRoot)
	}
	return hs, nil
}

// hostCgroup is a host's cgroup, relative to the root of each hierarchy.
func hostCgroup(envID, host string) string { return filepath.Join(cgroupTop, envID, host) }

// envCgroup is the parent of an environment's host cgroups.
func envCgroup(envID string) string { return filepath.Join(cgroupTop, envID) }

// createCgroup creates rel in every hierarchy. A new cpuset cgroup of v1
// accepts no process until it has CPUs and memory nodes: it gets its
// parent's.
func createCgroup(hs []hierarchy, rel string) error {
	for _, h := range hs {
		dir := h.Point
		for part := range strings.SplitSeq(rel, "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			if h.isCpuset() {
				if err := inheritCpuset(parent, dir); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func inheritCpuset(parent, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if strings.TrimSpace(string(cur)) != "" {
			continue
		}
		v, err := os.ReadFile(filepath.Join(parent, f))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
		}
		if err != nil {
			return fmt.Errorf("create cgroup %s: %s: %w", dir, f, err)
		}
	}
	return nil
}

// cgroupDirs returns rel and every cgroup below it in every hierarchy,
// deepest first.
func cgroupDirs(hs []hierarchy, rel string) []string {
	var dirs []string
	for _, h := range hs {
		filepath.WalkDir(filepath.Join(h.Point, rel), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil // a cgroup vanishing under us is fine
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// cgroupProcs lists the processes in rel and below, in any hierarchy.
func cgroupProcs(hs []hierarchy, rel string) []int {
	var pids []int
	for _, dir := range cgroupDirs(hs, rel) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for f := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killCgroup kills every process in rel and below and waits until none is
// left. Killing a host's PID 1 ends its PID namespace; the others follow.
func killCgroup(ctx context.Context, hs []hierarchy, rel string) error {
	return poll(ctx, "processes of cgroup "+rel+" to exit", 30*time.Second, 20*time.Millisecond, func() (bool, string, error) {
		pids := cgroupProcs(hs, rel)
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		return len(pids) == 0, fmt.Sprintf("pids %v", pids), nil
	})
}

// removeCgroup removes rel and every cgroup below it from every hierarchy.
// Its processes must be gone; a cgroup may stay busy for a moment after its
// last process was killed, so removal is retried for a bounded time.
func removeCgroup(ctx context.Context, hs []hierarchy, rel string) error {
	return poll(ctx, "removal of cgroup "+rel, 30*time.Second, 20*time.Millisecond, func() (bool, string, error) {
		var busy []string
		for _, dir := range cgroupDirs(hs, rel) {
			if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
				busy = append(busy, fmt.Sprintf("%s: %v", dir, err))
			}
		}
		return len(busy) == 0, strings.Join(busy, "; "), nil
	})
}

// removeCgroupTop removes the shared ecomtest cgroup once no environment
// uses it. Callers hold the global lock, which creating a host's cgroup
// takes too, so the two never race.
func removeCgroupTop(hs []hierarchy) {
	for _, h := range hs {
		unix.Rmdir(filepath.Join(h.Point, cgroupTop)) // busy while others use it
	}
}

// cgroupMountScript returns shell lines that mount, in a host's new mount
// and cgroup namespaces, the same hierarchies as the machine has under
// sys/fs/cgroup relative to the working directory (the host's root).
func cgroupMountScript(hs []hierarchy) (string, error) {
	var b strings.Builder
	tmpfs := false
	for _, h := range hs {
		rel := strings.TrimPrefix(h.Point, cgroupRoot)
		if rel != "" && !tmpfs {
			b.WriteString("mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup sys/fs/cgroup\n")
			tmpfs = true
		}
		dir := shellQuote("sys/fs/cgroup" + rel)
		switch h.FSType {
		case "cgroup2":
			fmt.Fprintf(&b, "mkdir -p %s && mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s\n", dir, dir)
		default:
			fmt.Fprintf(&b, "mkdir -p %s && mount -t cgroup -o nosuid,nodev,noexec,%s cgroup %s\n", dir, h.Opts, dir)
		}
	}
	// Symlinks such as cpu -> cpu,cpuacct on machines that co-mount them.
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		return "", fmt.Errorf("cgroups: %w", err)
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(cgroupRoot, e.Name()))
		if err != nil {
			return "", fmt.Errorf("cgroups: %w", err)
		}
		fmt.Fprintf(&b, "ln -sfn %s %s\n", shellQuote(target), shellQuote("sys/fs/cgroup/"+e.Name()))
	}
	return b.String(), nil
}
