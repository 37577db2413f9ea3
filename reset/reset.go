// Package reset takes a node out of its cluster and removes what the
// agent generated on it (`ecom-agent reset`).
package reset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// Systemd is what reset asks of systemd; *units.Manager is one.
type Systemd interface {
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Stop(ctx context.Context, name string) error
	Disable(ctx context.Context, names ...string) ([]string, error)
	Remove(ctx context.Context, names []string) error
}

var _ Systemd = (*units.Manager)(nil)

// Options configure Reset.
type Options struct {
	Root    *hostfs.Root
	Config  *config.Config
	Systemd Systemd
	// Runner runs `kube-proxy --cleanup`.
	Runner units.Runner
	// Force resets even when removing the etcd member would break the
	// quorum, or the cluster cannot be reached; the member then stays
	// listed, and its data and keys are kept under a ".reset-TIME" name.
	Force bool
	// DryRun reports what reset would do and changes nothing.
	DryRun bool
	Now    func() time.Time
	// EtcdTimeout bounds reading the member list (default 10s).
	EtcdTimeout time.Duration
	// Progress receives one line per step, as it starts.
	Progress func(string)
}

// Report says what reset did (or, in a dry run, would do).
type Report struct {
	Node   string `json:"node"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Etcd is the decision about this node's etcd member.
	Etcd string `json:"etcd,omitempty"`
	// MemberRemoved names the etcd member removed ("name (id)").
	MemberRemoved string   `json:"member_removed,omitempty"`
	LeaderMoved   string   `json:"leader_moved_to,omitempty"`
	Voters        []string `json:"voters_left,omitempty"`
	// Units are the units stopped, disabled and deleted.
	Units []string `json:"units,omitempty"`
	// Disabled are units disabled but kept (the agent's own).
	Disabled []string `json:"disabled,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	// Backups are paths renamed aside instead of deleted (forced reset
	// of a member still listed: its data may be the only copy).
	Backups  []string `json:"backups,omitempty"`
	Kept     []string `json:"kept,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Steps are, in a dry run, the steps a reset would take after the
	// plan, each with what it does.
	Steps []string `json:"steps,omitempty"`
}

// UnsafeError is a reset refused because it would harm the cluster;
// nothing was changed.
type UnsafeError struct{ Reason string }

func (e *UnsafeError) Error() string { return "refusing to reset: " + e.Reason }

// stopOrder is the order reset stops units in: the reverse of the
// catalogue's start order (clients before the API server, the API server
// before etcd).
func stopOrder() []string {
	u := bootstrap.AllUnits()
	slices.Reverse(u)
	return u
}

// Reset takes this node out of its cluster and removes what the agent
// generated, so that a later `ecom-agent join` starts as on a new host.
// It runs the Steps in order; a dry run runs only the first (it reads,
// it changes nothing) and reports what the others would do.
func Reset(ctx context.Context, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.EtcdTimeout == 0 {
		o.EtcdTimeout = 10 * time.Second
	}
	r := &resetter{o: o, rep: Report{Node: o.Config.NodeName, DryRun: o.DryRun}}
	for i, st := range Steps() {
		if o.DryRun && i > 0 {
			r.rep.Steps = append(r.rep.Steps, st.Name+": "+st.Describe)
			continue
		}
		o.Progress(st.Describe)
		if err := st.run(r, ctx); err != nil {
			var unsafe *UnsafeError
			if errors.As(err, &unsafe) {
				return r.rep, err
			}
			return r.rep, fmt.Errorf("reset step %s: %w", st.Name, err)
		}
	}
	if o.DryRun {
		r.rep.Units = presentUnits(ctx, o.Systemd)
		r.rep.Removed, r.rep.Kept = generatedPaths(o.Root)
		if p := r.plan; p != nil && p.leaving.Member && p.safe() {
			r.rep.MemberRemoved = p.memberName()
		}
	}
	return r.rep, nil
}

// Step is one named step of a reset.
type Step struct {
	Name string
	// Describe says what the step does: the progress line, and the dry
	// run's account of it.
	Describe string
	run      func(r *resetter, ctx context.Context) error
}

// Steps lists a reset's steps, in order:
//
//  1. plan: decide, read-only, whether this node's etcd member can be
//     removed with the quorum safe (quorum.Leave); refuse with an
//     UnsafeError otherwise, unless forced;
//  2. stop-agent: stop ecom-agent.service, which leaves gossip on its way
//     out (and must not react to its member's removal by joining again);
//  3. remove-member: hand etcd leadership to a healthy voter and remove
//     the member;
//  4. units: remove the pods, stop, disable and delete the component
//     units, clear kube-proxy's rules, and disable ecom-agent.service
//     (its file is the package's);
//  5. files: delete the PKI, configs, kubeconfigs, etcd data and the
//     agent's state, keeping /etc/ecom-agent (config and manifests.d),
//     images, set-aside etcd data and logs. A forced reset of a member
//     still listed renames etcd data and /etc/kubernetes aside instead.
func Steps() []Step {
	return []Step{
		{"plan", "checking that the etcd cluster keeps its quorum without this member", (*resetter).stepPlan},
		{"stop-agent", "stopping " + bootstrap.AgentUnit + " (it leaves gossip)", (*resetter).stepStopAgent},
		{"remove-member", "removing this node's etcd member (leadership handed to a healthy voter first)", (*resetter).stepRemoveMember},
		{"units", "stopping and removing the units (pods first, then kube-proxy's rules)", (*resetter).stepUnits},
		{"files", "removing generated files and state", (*resetter).stepFiles},
	}
}

// resetter is one reset in progress.
type resetter struct {
	o    Options
	rep  Report
	plan *leavePlan // nil: no etcd data here
	// removed is true once the member was removed.
	removed bool
}

func (r *resetter) stepPlan(ctx context.Context) error {
	hasData, err := nodestate.HasEtcdData(r.o.Root)
	if err != nil {
		return err
	}
	if !hasData {
		r.rep.Etcd = "this node holds no etcd data: there is no member to remove"
		return nil
	}
	r.plan = planLeave(ctx, r.o.Root, r.o.Config, r.o.EtcdTimeout)
	r.rep.Etcd, r.rep.Voters = r.plan.describe(), r.plan.leaving.Voters
	if !r.plan.safe() && !r.o.Force {
		return &UnsafeError{Reason: r.plan.describe()}
	}
	return nil
}

func (r *resetter) stepStopAgent(ctx context.Context) error {
	sd := r.o.Systemd
	if st, err := sd.Status(ctx, bootstrap.AgentUnit); err == nil && st.ActiveState != units.Inactive && st.ActiveState != units.Failed {
		if err := sd.Stop(ctx, bootstrap.AgentUnit); err != nil {
			return fmt.Errorf("stop %s: %w; nothing else was changed", bootstrap.AgentUnit, err)
		}
	}
	return nil
}

func (r *resetter) stepRemoveMember(ctx context.Context) error {
	if r.plan == nil || !r.plan.leaving.Member || !r.plan.safe() {
		return nil
	}
	// The quorum may have changed while the agent stopped: look again.
	r.plan = planLeave(ctx, r.o.Root, r.o.Config, r.o.EtcdTimeout)
	r.rep.Etcd, r.rep.Voters = r.plan.describe(), r.plan.leaving.Voters
	undo := fmt.Sprintf("%s was stopped, nothing else changed: `systemctl start %s` undoes it", bootstrap.AgentUnit, bootstrap.AgentUnit)
	switch {
	case r.plan.safe() && r.plan.leaving.Member:
		moved, err := r.plan.remove(ctx)
		switch {
		case err != nil && !r.o.Force:
			return fmt.Errorf("%w; %s", err, undo)
		case err != nil:
			r.rep.Warnings = append(r.rep.Warnings, err.Error())
		default:
			r.removed = true
			r.rep.MemberRemoved, r.rep.LeaderMoved = r.plan.memberName(), moved
		}
	case !r.o.Force:
		return fmt.Errorf("%w; %s", &UnsafeError{Reason: r.plan.describe()}, undo)
	}
	return nil
}

// keepData reports whether this node's etcd data may be the only copy of
// a member that may still be listed: it is then kept aside, never
// deleted.
func (r *resetter) keepData() bool {
	return r.plan != nil && !r.removed && (r.plan.err != nil || r.plan.leaving.Member)
}

func (r *resetter) stepUnits(ctx context.Context) error {
	o := r.o
	if r.keepData() {
		member := "this node's etcd member"
		if r.plan.selfID != 0 {
			member = "etcd member " + r.plan.memberName()
		}
		r.rep.Warnings = append(r.rep.Warnings, member+" may stay listed in its cluster: once this host is gone for etcd.replace_dead_after "+
			"the agents replace it with a standby; or remove it from a healthy member with `etcdctl member remove ID`")
	}
	r.rep.Units = presentUnits(ctx, o.Systemd)
	if o.Runner != nil {
		r.rep.Warnings = append(r.rep.Warnings, removePods(ctx, o.Root, o.Config, o.Systemd, o.Runner)...)
	}
	if err := o.Systemd.Remove(ctx, stopOrder()); err != nil {
		r.rep.Warnings = append(r.rep.Warnings, err.Error())
	}
	if msg := cleanupKubeProxy(ctx, o.Root, o.Config, o.Runner); msg != "" {
		r.rep.Warnings = append(r.rep.Warnings, msg)
	}
	if msg := cleanupNetworkPolicy(ctx, o.Runner); msg != "" {
		r.rep.Warnings = append(r.rep.Warnings, msg)
	}
	disabled, err := o.Systemd.Disable(ctx, bootstrap.AgentUnit)
	if err != nil {
		r.rep.Warnings = append(r.rep.Warnings, err.Error())
	}
	r.rep.Disabled = disabled
	return nil
}

func (r *resetter) stepFiles(context.Context) error {
	root := r.o.Root
	suffix := ".reset-" + strconv.FormatInt(r.o.Now().Unix(), 10)
	if r.keepData() {
		for _, p := range []string{bootstrap.EtcdDataDir, bootstrap.KubernetesDir} {
			if ok, _ := root.Exists(p); !ok {
				continue
			}
			if err := root.Rename(p, p+suffix); err != nil {
				return fmt.Errorf("keep %s aside: %w; nothing was deleted", p, err)
			}
			r.rep.Backups = append(r.rep.Backups, p+suffix)
		}
	}
	paths, kept := generatedPaths(root)
	r.rep.Kept = kept
	var errs []error
	for _, p := range paths {
		if err := removePath(root, p); err != nil {
			errs = append(errs, err)
			continue
		}
		r.rep.Removed = append(r.rep.Removed, p)
	}
	// /etc/kubernetes goes if nothing of an operator's is left in it.
	if entries, err := os.ReadDir(root.Path(bootstrap.KubernetesDir)); err == nil && len(entries) == 0 {
		if _, err := root.Remove(bootstrap.KubernetesDir); err == nil {
			r.rep.Removed = append(r.rep.Removed, bootstrap.KubernetesDir)
		}
	}
	return errors.Join(errs...)
}
