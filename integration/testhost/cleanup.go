package testhost

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Sweep tears down the leftovers of environments whose owner process died
// without closing them (a test binary killed by SIGKILL or a timeout), or
// that were made before the machine last booted. It finds them by their
// state files and also by the names of their namespaces, links and cgroups,
// so a leftover without a state file goes too. Open calls it.
func Sweep(ctx context.Context, opts Options) error {
	opts = opts.withDefaults()
	boot, err := bootID()
	if err != nil {
		return err
	}
	var dead []string
	err = withLock(ctx, globalLockPath(opts.StateDir), func() error {
		// Under the lock, a state file exists before anything named after
		// its environment: what has no state file is a leftover.
		ids, err := leftoverCandidates(opts.StateDir)
		for _, id := range ids {
			st, err := loadState(envDir(opts.StateDir, id))
			if err != nil || !st.live(boot) {
				dead = append(dead, id)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	for _, id := range dead {
		opts.Logf("testhost: removing leftovers of environment %s", id)
		if err := teardown(ctx, opts.StateDir, id); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// leftoverCandidates returns the IDs of all environments that have anything
// on the machine: a state directory, a namespace, a link or a cgroup.
func leftoverCandidates(stateDir string) ([]string, error) {
	var errs []error
	var found []string
	add := func(id string) {
		if isEnvID(id) && !slices.Contains(found, id) {
			found = append(found, id)
		}
	}
	dirs, err := listDir(envsDir(stateDir))
	errs = append(errs, err)
	for _, d := range dirs {
		add(d)
	}
	nss, err := listNetns()
	errs = append(errs, err)
	for _, ns := range nss {
		add(envIDOfNetns(ns))
	}
	links, err := listLinks()
	errs = append(errs, err)
	for _, l := range links {
		add(envIDOfLink(l))
	}
	hs, err := hierarchies()
	errs = append(errs, err)
	for _, h := range hs {
		cgs, err := listDir(filepath.Join(h.Point, cgroupTop))
		errs = append(errs, err)
		for _, cg := range cgs {
			add(cg)
		}
	}
	return found, errors.Join(errs...)
}

// teardown removes everything of environment id, whether or not its state
// file is there: processes, mounts, network, cgroups and files, in that
// order. It is idempotent, and goes on past errors to remove what it can.
func teardown(ctx context.Context, stateDir, id string) error {
	var errs []error
	dir := envDir(stateDir, id)
	st, _ := loadState(dir)

	// Killing a host's systemd ends its PID namespace and every process in
	// it, those entered by nsenter too; the cgroups hold the rest.
	var inits []*procRef
	if st != nil {
		for _, h := range st.Hosts {
			if h.Init.alive() {
				unix.Kill(h.Init.PID, unix.SIGKILL)
				inits = append(inits, h.Init)
			}
		}
	}
	errs = append(errs, poll(ctx, "hosts of "+id+" to exit", killTimeout, 5*time.Millisecond, func() (bool, string, error) {
		return !slices.ContainsFunc(inits, (*procRef).alive), "", nil
	}))
	hs, err := hierarchies()
	errs = append(errs, err)
	if err == nil {
		errs = append(errs, killCgroup(ctx, hs, envCgroup(id)))
	}

	errs = append(errs, unmountUnder(dir))
	errs = append(errs, removeNetwork(ctx, id))
	if hs != nil {
		errs = append(errs, withLock(ctx, globalLockPath(stateDir), func() error {
			err := removeCgroup(ctx, hs, envCgroup(id))
			removeCgroupTop(hs)
			return err
		}))
	}
	errs = append(errs, removeTree(dir))
	return errors.Join(errs...)
}
