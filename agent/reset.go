package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/token"
	"github.com/ecom-platform/ecom-agent/units"
)

// ResetSystemd is what reset asks of systemd; *units.Manager is one.
type ResetSystemd interface {
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Stop(ctx context.Context, name string) error
	Disable(ctx context.Context, names ...string) ([]string, error)
	Remove(ctx context.Context, names []string) error
}

var _ ResetSystemd = (*units.Manager)(nil)

// ResetOptions configure Reset.
type ResetOptions struct {
	Root    *hostfs.Root
	Config  *config.Config
	Systemd ResetSystemd
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

// ResetReport says what reset did (or, in a dry run, would do).
type ResetReport struct {
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
}

// UnsafeError is a reset refused because it would harm the cluster;
// nothing was changed.
type UnsafeError struct{ Reason string }

func (e *UnsafeError) Error() string { return "refusing to reset: " + e.Reason }

// resetUnits are the units a reset removes, in stopping order: clients
// before the API server, the API server before etcd.
var resetUnits = []string{
	bootstrap.KubeletUnit,
	bootstrap.ContainerdUnit,
	bootstrap.KubeProxyUnit,
	bootstrap.SchedulerUnit,
	bootstrap.ControllerManagerUnit,
	bootstrap.APIServerUnit,
	bootstrap.EtcdUnit,
}

// generatedKubernetes are the entries of /etc/kubernetes the agent
// writes; anything else there is an operator's and stays.
var generatedKubernetes = []string{
	"pki", "etcd", "encryption", "audit",
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
	"kubelet.conf", "ecom-agent.conf", "kube-proxy.conf",
}

// keptStateEntries are the entries of /var/lib/ecom-agent a reset keeps:
// the operator's image tarballs.
var keptStateEntries = []string{"images"}

// Reset takes this node out of its cluster and removes what the agent
// generated, so that a later `ecom-agent join` starts as on a new host:
//
//  1. it decides, read-only, whether this node's etcd member can be
//     removed with the quorum safe (quorum.Leave), and refuses with an
//     UnsafeError otherwise unless Force;
//  2. it stops ecom-agent.service, which leaves gossip on its way out;
//  3. it hands etcd leadership to a healthy voter and removes the member;
//  4. it stops, disables and deletes the component units, clears
//     kube-proxy's rules, and disables ecom-agent.service (its file is
//     the package's);
//  5. it deletes the PKI, configs, kubeconfigs, etcd data and the
//     agent's state, keeping /etc/ecom-agent (config and manifests.d),
//     images, set-aside etcd data and logs. A forced reset of a member
//     still listed renames etcd data and /etc/kubernetes aside instead.
func Reset(ctx context.Context, o ResetOptions) (ResetReport, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.EtcdTimeout == 0 {
		o.EtcdTimeout = 10 * time.Second
	}
	cfg, root := o.Config, o.Root
	rep := ResetReport{Node: cfg.NodeName, DryRun: o.DryRun}

	hasData, err := hasEtcdData(root)
	if err != nil {
		return rep, err
	}
	var plan *leavePlan
	if hasData {
		o.Progress("checking that the etcd cluster keeps its quorum without this member")
		plan = planLeave(ctx, root, cfg, o.EtcdTimeout)
		rep.Etcd = plan.describe()
		rep.Voters = plan.leaving.Voters
		if !plan.safe() && !o.Force {
			return rep, &UnsafeError{Reason: plan.describe()}
		}
	} else {
		rep.Etcd = "this node holds no etcd data: there is no member to remove"
	}
	if o.DryRun {
		rep.Units = presentUnits(ctx, o.Systemd)
		rep.Removed, rep.Kept = generatedPaths(root)
		if plan != nil && plan.leaving.Member && plan.safe() {
			rep.MemberRemoved = plan.memberName()
		}
		return rep, nil
	}

	// The agent goes first: it leaves gossip as it stops, and it must
	// not react to its member's removal by joining again.
	o.Progress("stopping " + bootstrap.AgentUnit + " (it leaves gossip)")
	if st, err := o.Systemd.Status(ctx, bootstrap.AgentUnit); err == nil && st.ActiveState != "inactive" && st.ActiveState != "failed" {
		if err := o.Systemd.Stop(ctx, bootstrap.AgentUnit); err != nil {
			return rep, fmt.Errorf("stop %s: %w; nothing else was changed", bootstrap.AgentUnit, err)
		}
	}

	removed := false
	if plan != nil && plan.leaving.Member && plan.safe() {
		// The quorum may have changed while the agent stopped: look again.
		plan = planLeave(ctx, root, cfg, o.EtcdTimeout)
		rep.Etcd, rep.Voters = plan.describe(), plan.leaving.Voters
		switch {
		case plan.safe() && plan.leaving.Member:
			o.Progress("removing etcd member " + plan.memberName())
			moved, err := plan.remove(ctx)
			if err != nil && !o.Force {
				return rep, fmt.Errorf("%w; %s was stopped, nothing else changed: `systemctl start %s` undoes it", err, bootstrap.AgentUnit, bootstrap.AgentUnit)
			}
			if err != nil {
				rep.Warnings = append(rep.Warnings, err.Error())
			} else {
				removed = true
				rep.MemberRemoved, rep.LeaderMoved = plan.memberName(), moved
			}
		case !o.Force:
			return rep, fmt.Errorf("%w; %s was stopped, nothing else changed: `systemctl start %s` undoes it",
				&UnsafeError{Reason: plan.describe()}, bootstrap.AgentUnit, bootstrap.AgentUnit)
		}
	}
	// Data of a member that may still be listed could be the cluster's
	// only copy: it is kept aside, never deleted.
	keepData := plan != nil && !removed && (plan.err != nil || plan.leaving.Member)
	if keepData {
		member := "this node's etcd member"
		if plan.selfID != 0 {
			member = "etcd member " + plan.memberName()
		}
		rep.Warnings = append(rep.Warnings, member+" may stay listed in its cluster: once this host is gone for etcd.replace_dead_after "+
			"the agents replace it with a standby; or remove it from a healthy member with `etcdctl member remove ID`")
	}

	o.Progress("stopping and removing the units")
	rep.Units = presentUnits(ctx, o.Systemd)
	if o.Runner != nil {
		rep.Warnings = append(rep.Warnings, removePods(ctx, root, cfg, o.Systemd, o.Runner)...)
	}
	if err := o.Systemd.Remove(ctx, resetUnits); err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}
	if msg := cleanupKubeProxy(ctx, root, cfg, o.Runner); msg != "" {
		rep.Warnings = append(rep.Warnings, msg)
	}
	disabled, err := o.Systemd.Disable(ctx, bootstrap.AgentUnit)
	if err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}
	rep.Disabled = disabled

	o.Progress("removing generated files and state")
	suffix := ".reset-" + strconv.FormatInt(o.Now().Unix(), 10)
	if keepData {
		for _, p := range []string{bootstrap.EtcdDataDir, bootstrap.KubernetesDir} {
			if ok, _ := root.Exists(p); !ok {
				continue
			}
			if err := root.Rename(p, p+suffix); err != nil {
				return rep, fmt.Errorf("keep %s aside: %w; nothing was deleted", p, err)
			}
			rep.Backups = append(rep.Backups, p+suffix)
		}
	}
	paths, kept := generatedPaths(root)
	rep.Kept = kept
	var errs []error
	for _, p := range paths {
		if err := removePath(root, p); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, p)
	}
	// /etc/kubernetes goes if nothing of an operator's is left in it.
	if entries, err := os.ReadDir(root.Path(bootstrap.KubernetesDir)); err == nil && len(entries) == 0 {
		if _, err := root.Remove(bootstrap.KubernetesDir); err == nil {
			rep.Removed = append(rep.Removed, bootstrap.KubernetesDir)
		}
	}
	return rep, errors.Join(errs...)
}

// presentUnits lists the reset units systemd knows.
func presentUnits(ctx context.Context, sd ResetSystemd) []string {
	var out []string
	for _, n := range resetUnits {
		st, err := sd.Status(ctx, n)
		if err == nil && st.LoadState != "" && st.LoadState != "not-found" {
			out = append(out, n)
		}
	}
	return out
}

// generatedPaths lists what the agent generated on this host that
// exists, and what reset keeps.
func generatedPaths(root *hostfs.Root) (remove, keep []string) {
	exists := func(p string) bool { ok, _ := root.Exists(p); return ok }
	// The agent's own entries of /etc/kubernetes, and the NAME.old copies
	// certificate renewal keeps of them.
	if entries, err := os.ReadDir(root.Path(bootstrap.KubernetesDir)); err == nil {
		for _, e := range entries {
			p := bootstrap.KubernetesDir + "/" + e.Name()
			if slices.Contains(generatedKubernetes, strings.TrimSuffix(e.Name(), ".old")) {
				remove = append(remove, p)
			} else {
				keep = append(keep, p)
			}
		}
	}
	for _, p := range []string{
		bootstrap.EtcdDataDir,
		bootstrap.KubeProxyConfigFile, bootstrap.KubeletConfigFile, bootstrap.KubeletPKIDir,
		bootstrap.ContainerdConfigFile, bootstrap.CNIConfFile, KubeProxyClientCert,
	} {
		if exists(p) {
			remove = append(remove, p)
		}
	}
	if entries, err := os.ReadDir(root.Path(bootstrap.AgentStateDir)); err == nil {
		for _, e := range entries {
			p := bootstrap.AgentStateDir + "/" + e.Name()
			if slices.Contains(keptStateEntries, e.Name()) {
				keep = append(keep, p)
			} else {
				remove = append(remove, p)
			}
		}
	}
	// The ca-pin lives in the state directory today; say so if it moves.
	if p := token.DefaultPinPath; exists(p) && !slices.Contains(remove, p) {
		remove = append(remove, p)
	}
	for _, p := range []string{bootstrap.AgentConfigFile, "/etc/ecom-agent/manifests.d", "/var/log/kubernetes"} {
		if exists(p) {
			keep = append(keep, p)
		}
	}
	// Data set aside by earlier removals and resets stays: it is never
	// deleted by the agent.
	for _, p := range []string{bootstrap.EtcdDataDir, bootstrap.KubernetesDir} {
		dir, base := path.Split(p)
		entries, _ := os.ReadDir(root.Path(dir))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), base+".aside-") || strings.HasPrefix(e.Name(), base+".reset-") {
				keep = append(keep, dir+e.Name())
			}
		}
	}
	sort.Strings(keep)
	return remove, keep
}

func removePath(root *hostfs.Root, p string) error {
	info, err := os.Lstat(root.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.IsDir() {
		return root.RemoveAll(p)
	}
	_, err = root.Remove(p)
	return err
}

// cleanupKubeProxy removes kube-proxy's iptables, ipvs and nftables
// rules with its own --cleanup, when kube-proxy ran here. It returns a
// warning, or "".
func cleanupKubeProxy(ctx context.Context, root *hostfs.Root, cfg *config.Config, r units.Runner) string {
	if r == nil {
		return ""
	}
	if ok, _ := root.Exists(bootstrap.KubeProxyConfigFile); !ok {
		return ""
	}
	bin := cfg.Binaries.KubeProxy
	if ok, _ := root.Exists(bin); !ok {
		return fmt.Sprintf("kube-proxy's rules stay: %s is missing (run `kube-proxy --cleanup` to remove them)", bin)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := r.Output(cctx, root.Path(bin), "--cleanup"); err != nil {
		return fmt.Sprintf("kube-proxy --cleanup: %v", err)
	}
	return ""
}

// leavePlan is what planLeave found about this node's etcd member.
type leavePlan struct {
	// err is set when the cluster could not be read: no quorum, or no
	// member answering.
	err       error
	leaving   quorum.Leaving
	selfID    uint64
	selfName  string
	leaderID  uint64
	members   []quorum.EtcdMember
	endpoints map[uint64]string
	tls       *clientv3.Config
}

func (p *leavePlan) safe() bool { return p.err == nil && p.leaving.Safe }

func (p *leavePlan) memberName() string {
	return fmt.Sprintf("%s (%s)", p.selfName, hexID(p.selfID))
}

func (p *leavePlan) describe() string {
	if p.err != nil {
		return "cannot read the etcd cluster's members (" + p.err.Error() + "): without a quorum this member cannot be removed; " +
			"bring the other members back, or use --force"
	}
	return p.leaving.Reason
}

// planLeave reads the member list through any member that answers (this
// node's own etcd first, then the members it started with) and probes
// every member's client URL.
func planLeave(ctx context.Context, root *hostfs.Root, cfg *config.Config, timeout time.Duration) *leavePlan {
	p := &leavePlan{selfName: cfg.NodeName, endpoints: map[uint64]string{}}
	tlsCfg, err := etcdClientTLS(root)
	if err != nil {
		p.err = err
		return p
	}
	// This node's etcd first, then every member it started with.
	endpoints := []string{bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)}
	if st, err := readState(root); err == nil && st != nil && st.Etcd != nil {
		endpoints = append(endpoints, st.Etcd.Membership().ClientURLs(cfg.Etcd.ClientPort)...)
	}
	p.tls = &clientv3.Config{TLS: tlsCfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()}
	c := *p.tls
	c.Endpoints = endpoints
	cli, err := clientv3.New(c)
	if err != nil {
		p.err = err
		return p
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ml, err := cli.MemberList(lctx)
	if err != nil {
		p.err = err
		return p
	}
	self := bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)
	urls := make([]string, len(ml.Members))
	for i, m := range ml.Members {
		if len(m.ClientURLs) > 0 {
			urls[i] = m.ClientURLs[0]
			p.endpoints[m.ID] = urls[i]
		}
	}
	answers, _ := probeMembers(ctx, cli, urls)
	for i, m := range ml.Members {
		if m.Name == cfg.NodeName || slices.Contains(m.PeerURLs, self) {
			p.selfID = m.ID
		}
		em := quorum.EtcdMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner, Started: m.Name != "",
			Active: answers[i] != nil}
		if answers[i] != nil && answers[i].Leader != 0 {
			p.leaderID = answers[i].Leader
		}
		p.members = append(p.members, em)
	}
	p.leaving = quorum.Leave(p.selfID, p.members)
	if !p.leaving.Member {
		p.selfID = 0
	}
	return p
}

// remove hands leadership to a healthy voter if this member leads, then
// removes the member through the others. It returns the new leader's name
// when leadership moved.
func (p *leavePlan) remove(ctx context.Context) (string, error) {
	var others []string
	var transferee quorum.EtcdMember
	for _, m := range p.members {
		if m.ID == p.selfID {
			continue
		}
		if ep, ok := p.endpoints[m.ID]; ok && m.Active {
			others = append(others, ep)
			if !m.IsLearner && transferee.ID == 0 {
				transferee = m
			}
		}
	}
	if len(others) == 0 {
		return "", fmt.Errorf("no other etcd member answers")
	}
	moved := ""
	if p.leaderID == p.selfID && transferee.ID != 0 {
		c := *p.tls
		c.Endpoints = []string{p.endpoints[p.selfID]}
		if cli, err := clientv3.New(c); err == nil {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := cli.MoveLeader(mctx, transferee.ID); err == nil {
				moved = transferee.Name
			}
			cancel()
			cli.Close()
		}
	}
	c := *p.tls
	c.Endpoints = others
	cli, err := clientv3.New(c)
	if err != nil {
		return moved, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.MemberRemove(rctx, p.selfID); err != nil {
		return moved, fmt.Errorf("remove etcd member %s: %w", p.memberName(), err)
	}
	return moved, nil
}

// removePods stops the kubelet (so it starts nothing more), then stops
// and removes every pod sandbox over CRI while the runtime still runs, as
// `kubeadm reset` does with crictl, so no pod outlives a reset
// (containerd's unit keeps its shims across its own restarts, by
// design), and removes the pod network: the bridge, the routes to other
// nodes' pods and the masquerade rule. Every step is best effort and
// bounded in time: what fails is reported.
func removePods(ctx context.Context, root *hostfs.Root, cfg *config.Config, sd ResetSystemd, runner units.Runner) []string {
	var warns []string
	r := timeoutRunner{runner, 30 * time.Second}
	if st, err := sd.Status(ctx, bootstrap.KubeletUnit); err == nil && st.ActiveState == "active" {
		if err := sd.Stop(ctx, bootstrap.KubeletUnit); err != nil {
			warns = append(warns, fmt.Sprintf("stop %s: %v", bootstrap.KubeletUnit, err))
		}
	}
	if sock := bootstrap.ContainerdSocket(cfg); sock != "" {
		if ok, _ := root.Exists(sock); ok {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if _, err := removeAllPods(pctx, root.Path(sock)); err != nil {
				warns = append(warns, fmt.Sprintf("remove the pods: %v", err))
			}
			cancel()
		}
	}
	// The pod network: the node's own range is in its CNI config; the
	// routes to the other nodes' ranges exist only where it does.
	data, err := root.ReadFile(bootstrap.CNIConfFile)
	if err != nil {
		return warns
	}
	var conf struct {
		Plugins []struct {
			IPAM struct {
				Ranges [][]struct{ Subnet string }
			}
		}
	}
	if json.Unmarshal(data, &conf) == nil && len(conf.Plugins) > 0 && len(conf.Plugins[0].IPAM.Ranges) > 0 && len(conf.Plugins[0].IPAM.Ranges[0]) > 0 {
		podCIDR := conf.Plugins[0].IPAM.Ranges[0][0].Subnet
		r.Output(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-D"}, masqueradeRule(podCIDR, cfg.Network.PodCIDR.String())...)...)
	}
	r.Output(ctx, "ip", "link", "delete", "cni0")
	out, err := r.Output(ctx, "ip", "-o", "route", "show", "root", cfg.Network.PodCIDR.String())
	if err == nil {
		for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[1] == "via" {
				if _, err := r.Output(ctx, "ip", "route", "del", f[0]); err != nil {
					warns = append(warns, fmt.Sprintf("remove the route to %s: %v", f[0], err))
				}
			}
		}
	}
	return warns
}

// removeAllPods stops and removes every pod sandbox the CRI runtime at
// socket knows (its containers go with it) and returns how many.
func removeAllPods(ctx context.Context, socket string) (int, error) {
	conn, err := nodecheck.DialCRI(socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pod sandboxes at %s: %w", socket, err)
	}
	var errs []error
	n := 0
	for _, sb := range list.Items {
		name := sb.GetMetadata().GetNamespace() + "/" + sb.GetMetadata().GetName()
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", name, err))
			continue
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// timeoutRunner bounds every command it runs.
type timeoutRunner struct {
	r units.Runner
	d time.Duration
}

func (t timeoutRunner) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.Output(ctx, name, args...)
}
