// Package recovery brings a control-plane node's etcd back from a lost
// quorum: `ecom-agent etcd recover` on a surviving member when the others
// are gone restarts its etcd as a one-member cluster from its own data
// (etcd's --force-new-cluster, as k3s's --cluster-reset and etcd's
// disaster-recovery guide do), after copying that data aside. The other
// control-plane nodes come back as new members as they return: the
// cluster no longer lists them, so their agents set their stale data aside
// (never deleting it) and join as learners, which the reconciler promotes.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// Systemd is what recovery asks of systemd.
type Systemd interface {
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Stop(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
}

var _ Systemd = (*units.Manager)(nil)

// Options configure Recover.
type Options struct {
	Config  *config.Config
	Root    *hostfs.Root
	Systemd Systemd
	Now     func() time.Time
	// QuorumTimeout bounds the check that no quorum answers (default
	// 10s).
	QuorumTimeout time.Duration
	// Progress receives one line per step.
	Progress func(string)
}

var timeNow = time.Now

func (o Options) quorumTimeout() time.Duration {
	if o.QuorumTimeout == 0 {
		return 10 * time.Second
	}
	return o.QuorumTimeout
}

// Report says what Recover did.
type Report struct {
	Node string `json:"node"`
	// Backup is where this node's etcd data was copied before etcd
	// rewrote its membership.
	Backup string `json:"backup"`
	// ClusterID and MemberID are the one-member cluster's.
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	// Revision is the data's revision: nothing written before the loss
	// is lost.
	Revision int64 `json:"revision"`
	// Removed are the members etcd dropped from its list.
	Removed []string `json:"removed_members"`
}

// QuorumError is a recover refused because the cluster still has a
// quorum; nothing was changed.
type QuorumError struct {
	// Answering names the members that answered.
	Answering []string
	// Restore is true for a restore refused.
	Restore bool
}

func (e *QuorumError) Error() string {
	if e.Restore {
		return fmt.Sprintf("refusing to restore: this node's etcd cluster has a quorum (answering: %s), and a second cluster beside it would split it. "+
			"Stop ecom-agent and etcd on the other control-plane nodes first (`systemctl stop ecom-agent etcd`); they join the restored cluster after `ecom-agent reset`", strings.Join(e.Answering, ", "))
	}
	return fmt.Sprintf("refusing to recover: the etcd cluster has a quorum (answering: %s); recover is for a cluster that lost it. "+
		"Replace a lost member with `ecom-agent reset` on it and a new join, or let the reconciler replace it", strings.Join(e.Answering, ", "))
}

// Recover restarts this node's etcd as a one-member cluster from its own
// data, when the cluster has no quorum. Its steps, in order: check the
// node (a control-plane node whose member served, with its data), check
// that no quorum answers, stop the agent and etcd, copy the data aside,
// run etcd once with --force-new-cluster, record the one-member
// membership, start the agent again.
func Recover(ctx context.Context, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = timeNow
	}
	o.QuorumTimeout = o.quorumTimeout()
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	cfg, root := o.Config, o.Root
	rep := Report{Node: cfg.NodeName}
	if !cfg.IsControlPlane() {
		return rep, errors.New("a worker runs no etcd member: recover on a control-plane node that kept its etcd data")
	}
	st, err := nodestate.ReadState(root)
	if err != nil {
		return rep, err
	}
	if st == nil || st.Etcd == nil || st.Etcd.Served.IsZero() {
		return rep, errors.New("this node's etcd member never served: there is nothing here to recover from")
	}
	has, err := nodestate.HasEtcdData(root)
	if err != nil {
		return rep, fmt.Errorf("cannot read etcd's data in %s: %w", bootstrap.EtcdDataDir, err)
	}
	if !has {
		return rep, fmt.Errorf("%s holds no etcd data: recover on the node that kept it, or restore a snapshot", bootstrap.EtcdDataDir)
	}

	o.Progress("checking that no quorum of etcd members answers")
	if answering, quorum := checkQuorum(ctx, root, cfg, st.Etcd, o.QuorumTimeout); quorum {
		return rep, &QuorumError{Answering: answering}
	}

	o.Progress("stopping " + bootstrap.AgentUnit + " and " + bootstrap.EtcdUnit)
	for _, u := range []string{bootstrap.AgentUnit, bootstrap.EtcdUnit} {
		if err := o.Systemd.Stop(ctx, u); err != nil {
			return rep, fmt.Errorf("stop %s: %w; start it again with systemctl start %s", u, err, bootstrap.AgentUnit)
		}
	}
	undo := fmt.Sprintf("nothing else was changed: `systemctl start %s` undoes the stop", bootstrap.AgentUnit)

	rep.Backup = bootstrap.EtcdDataDir + ".recover-" + o.Now().UTC().Format("20060102T150405Z")
	o.Progress("copying " + bootstrap.EtcdDataDir + " to " + rep.Backup)
	// The copy holds every Secret: its directory is root's alone
	// (os.CopyFS makes files 0644 inside it).
	if err := os.Mkdir(root.Path(rep.Backup), 0o700); err != nil {
		return rep, fmt.Errorf("copy the etcd data aside: %w; %s", err, undo)
	}
	if err := os.CopyFS(root.Path(rep.Backup), os.DirFS(root.Path(bootstrap.EtcdDataDir))); err != nil {
		_ = os.RemoveAll(root.Path(rep.Backup))
		return rep, fmt.Errorf("copy the etcd data aside: %w; %s", err, undo)
	}

	o.Progress("starting etcd once with --force-new-cluster")
	if err := forceNewCluster(ctx, root, &rep); err != nil {
		return rep, fmt.Errorf("%w; the data before is in %s, and `systemctl start %s` starts the node as it was", err, rep.Backup, bootstrap.AgentUnit)
	}

	for name := range st.Etcd.Peers {
		if name != cfg.NodeName {
			rep.Removed = append(rep.Removed, name)
		}
	}
	slices.Sort(rep.Removed)
	err = recordAndStart(ctx, o, func(s *nodestate.State) {
		s.Etcd.State = bootstrap.EtcdStartExisting
		s.Etcd.Peers = map[string]string{cfg.NodeName: bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)}
	})
	return rep, err
}

// recordAndStart records the one-member cluster in the node's state with
// set, then starts the agent.
func recordAndStart(ctx context.Context, o Options, set func(*nodestate.State)) error {
	o.Progress("recording the one-member cluster in the node's state")
	store, err := nodestate.Open(o.Root, o.Now)
	if err != nil {
		return err
	}
	if err := store.Update(func(s *nodestate.State) error { set(s); return nil }); err != nil {
		return err
	}
	o.Progress("starting " + bootstrap.AgentUnit)
	if err := o.Systemd.Start(ctx, bootstrap.AgentUnit); err != nil {
		return fmt.Errorf("start %s: %w", bootstrap.AgentUnit, err)
	}
	return nil
}

// checkQuorum asks this node's etcd and every member of its decision for
// a linearizable read: it succeeds only with a quorum.
func checkQuorum(ctx context.Context, root *hostfs.Root, cfg *config.Config, dec *nodestate.EtcdDecision, timeout time.Duration) ([]string, bool) {
	tlsCfg, err := etcdclient.ClientTLS(root)
	if err != nil {
		return nil, false
	}
	endpoints := append([]string{bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)},
		dec.Membership().ClientURLs(cfg.Etcd.ClientPort)...)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, false
	}
	defer cli.Close()
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(qctx, "/ecom-agent/recover-quorum-check"); err != nil {
		return nil, false
	}
	// Name the members that answer, as the cluster lists them now (the
	// decision may be older than the membership).
	names, urls := []string{}, []string{}
	if ml, err := cli.MemberList(qctx); err == nil {
		for _, m := range ml.Members {
			if len(m.ClientURLs) > 0 {
				names, urls = append(names, m.Name), append(urls, m.ClientURLs[0])
			}
		}
	}
	var answering []string
	answers, _ := etcdclient.ProbeMembers(ctx, cli, urls)
	for i, a := range answers {
		if a != nil {
			answering = append(answering, names[i]+" ("+urls[i]+")")
		}
	}
	slices.Sort(answering)
	return answering, true
}

// forceNewCluster runs etcd in this process from the node's rendered
// config with --force-new-cluster until it serves as a one-member
// cluster, then stops it.
func forceNewCluster(ctx context.Context, root *hostfs.Root, rep *Report) error {
	data, err := root.ReadFile(bootstrap.EtcdConfigFile)
	if err != nil {
		return fmt.Errorf("read etcd's config: %w", err)
	}
	under, err := bootstrap.EtcdConfigUnder(root, data)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "etcd-recover-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(under); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	ecfg, err := embed.ConfigFromFile(tmp.Name())
	if err != nil {
		return fmt.Errorf("etcd's config: %w", err)
	}
	ecfg.ForceNewCluster = true
	ecfg.LogLevel = "warn"
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return fmt.Errorf("start etcd with --force-new-cluster: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("etcd with --force-new-cluster: %w", err)
	case <-time.After(2 * time.Minute):
		return errors.New("etcd with --force-new-cluster did not serve within 2 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
	members := e.Server.Cluster().Members()
	if len(members) != 1 {
		return fmt.Errorf("etcd lists %d members after --force-new-cluster, not 1", len(members))
	}
	rep.ClusterID = e.Server.Cluster().ID().String()
	rep.MemberID = e.Server.MemberID().String()
	rep.Revision = e.Server.KV().Rev()
	return nil
}
