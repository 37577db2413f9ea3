package recovery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.etcd.io/etcd/client/pkg/v3/types"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/snapshot"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Options
	// Snapshot is the file to restore.
	Snapshot string
	// Force restores a snapshot that carries no cluster keys, or keys
	// that do not open with this node's config (another cluster), with
	// this node's own keys.
	Force bool
}

// RestoreReport says what Restore did.
type RestoreReport struct {
	Node     string `json:"node"`
	Snapshot string `json:"snapshot"`
	// Revision is the snapshot's; the restored etcd continues from
	// Revision+RevisionBump.
	Revision int64 `json:"revision"`
	// ClusterID and MemberID are the new one-member cluster's.
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	// Keys is where the cluster keys came from: "snapshot", or "node"
	// with --force.
	Keys string `json:"keys"`
	// Backup is where this node's etcd data went, if it had some.
	Backup string `json:"backup,omitempty"`
}

// RevisionBump is added to the snapshot's revision, and every revision
// before marked compacted, as etcd's disaster-recovery guide advises for
// Kubernetes: watchers that saw later revisions of the lost cluster
// relist instead of waiting for revisions that will never come.
const RevisionBump = 1_000_000_000

// RefusedError is a restore refused before anything was changed.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string {
	return "refusing to restore: " + e.Reason + "; nothing was changed"
}

// Restore rebuilds etcd on this node as a one-member cluster from a
// snapshot, with a new cluster ID, and installs the cluster keys the
// snapshot carries. Its steps, in order: check the snapshot (it must
// verify, and its keys must open with this node's config unless Force),
// check that no quorum of this node's cluster answers, install the keys,
// stop the agent and etcd, restore into a new directory, move this
// node's data aside (never deleted), put the restored data in place,
// record the one-member cluster and start the agent. The other
// control-plane nodes join it as new members; the reconciler promotes
// them.
func Restore(ctx context.Context, o RestoreOptions) (RestoreReport, error) {
	if o.Now == nil {
		o.Now = timeNow
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	cfg, root := o.Config, o.Root
	rep := RestoreReport{Node: cfg.NodeName, Snapshot: o.Snapshot}
	if !cfg.IsControlPlane() {
		return rep, errors.New("a worker runs no etcd member: restore on a control-plane node")
	}
	o.Progress("verifying " + o.Snapshot)
	meta, err := snapshot.Verify(o.Snapshot)
	if err != nil {
		return rep, &RefusedError{Reason: err.Error()}
	}
	rep.Revision = meta.Revision
	sealed, from, err := restoreKeys(root, cfg, o.Snapshot, o.Force)
	if err != nil {
		return rep, err
	}
	rep.Keys = from
	shared, err := clusterkeys.Open(cfg, sealed)
	if err != nil {
		return rep, &RefusedError{Reason: err.Error()}
	}

	st, err := nodestate.ReadState(root)
	if err != nil {
		return rep, err
	}
	has, err := nodestate.HasEtcdData(root)
	if err != nil {
		return rep, fmt.Errorf("cannot read etcd's data in %s: %w", bootstrap.EtcdDataDir, err)
	}
	var dec *nodestate.EtcdDecision
	if st != nil {
		dec = st.Etcd
	}
	if has || dec != nil {
		o.Progress("checking that no quorum of this node's etcd cluster answers")
		if answering, quorum := checkQuorum(ctx, root, cfg, dec, o.quorumTimeout()); quorum {
			return rep, &QuorumError{Answering: answering, Restore: true}
		}
	}

	o.Progress("installing the cluster keys of the " + from)
	if err := shared.Install(root, cfg); err != nil {
		return rep, &RefusedError{Reason: err.Error()}
	}
	if err := clusterkeys.SaveSealed(root, sealed); err != nil {
		return rep, err
	}

	o.Progress("stopping " + bootstrap.AgentUnit + " and " + bootstrap.EtcdUnit)
	if err := stopIfLoaded(ctx, o.Systemd, bootstrap.AgentUnit, bootstrap.EtcdUnit); err != nil {
		return rep, fmt.Errorf("%w; start it again with systemctl start %s", err, bootstrap.AgentUnit)
	}
	undo := fmt.Sprintf("this node's etcd data is unchanged: `systemctl start %s` undoes the stop", bootstrap.AgentUnit)

	stamp := o.Now().UTC().Format("20060102T150405Z")
	token, err := bootstrap.NewEtcdToken(cfg.ClusterName)
	if err != nil {
		return rep, err
	}
	self := bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)
	tmp := bootstrap.EtcdDataDir + ".restoring-" + stamp
	o.Progress(fmt.Sprintf("restoring revision %d into %s", meta.Revision, tmp))
	err = etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath: o.Snapshot, Name: cfg.NodeName, OutputDataDir: root.Path(tmp),
		PeerURLs: []string{self}, InitialCluster: cfg.NodeName + "=" + self, InitialClusterToken: token,
		RevisionBump: RevisionBump, MarkCompacted: true,
	})
	if err != nil {
		_ = os.RemoveAll(root.Path(tmp))
		return rep, fmt.Errorf("restore the snapshot: %w; %s", err, undo)
	}
	if err := os.Chmod(root.Path(tmp), 0o700); err != nil {
		return rep, err
	}
	if _, err := os.Lstat(root.Path(bootstrap.EtcdDataDir)); err == nil {
		rep.Backup = bootstrap.EtcdDataDir + ".restore-" + stamp
		o.Progress("moving " + bootstrap.EtcdDataDir + " to " + rep.Backup)
		if err := os.Rename(root.Path(bootstrap.EtcdDataDir), root.Path(rep.Backup)); err != nil {
			_ = os.RemoveAll(root.Path(tmp))
			return rep, fmt.Errorf("move the etcd data aside: %w; %s", err, undo)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	}
	if err := os.Rename(root.Path(tmp), root.Path(bootstrap.EtcdDataDir)); err != nil {
		return rep, fmt.Errorf("put the restored data in place: %w; it is in %s, the data before in %s", err, tmp, rep.Backup)
	}
	if rep.ClusterID, rep.MemberID, err = ids(token, cfg.NodeName, self); err != nil {
		return rep, err
	}

	now := o.Now()
	err = recordAndStart(ctx, o.Options, func(s *nodestate.State) {
		s.Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartExisting, Token: token,
			Peers: map[string]string{cfg.NodeName: self}, DecidedAt: now, Served: now}
	})
	return rep, err
}

// restoreKeys returns the sealed cluster keys a restore installs: the
// snapshot's, or with force this node's own when the snapshot's are
// missing or belong to another cluster.
func restoreKeys(root *hostfs.Root, cfg *config.Config, path string, force bool) ([]byte, string, error) {
	sealed, found, err := snapshot.ReadKey(path, clusterkeys.EtcdKey)
	if err != nil {
		return nil, "", &RefusedError{Reason: err.Error()}
	}
	var why string
	switch {
	case !found:
		why = "the snapshot carries no cluster keys (taken by etcdctl, or by an agent of before snapshots carried them): " +
			"the CAs, service-account key and encryption key its data was made with are not in it"
	default:
		if _, err := clusterkeys.Open(cfg, sealed); err != nil {
			why = fmt.Sprintf("the snapshot belongs to another cluster than %q (%v)", cfg.ClusterName, err)
		}
	}
	if why == "" {
		return sealed, "snapshot", nil
	}
	if !force {
		return nil, "", &RefusedError{Reason: why + "; --force restores its data with this node's own keys " +
			"(Secrets encrypted with other keys then cannot be read, and service-account tokens are invalid)"}
	}
	own, err := clusterkeys.Sealed(root, cfg)
	if err != nil {
		return nil, "", &RefusedError{Reason: why + ", and this node holds no keys of its own for --force: " + err.Error()}
	}
	return own, "node", nil
}

// stopIfLoaded stops each unit systemd knows (a fresh node has no etcd
// unit yet).
func stopIfLoaded(ctx context.Context, sd Systemd, names ...string) error {
	for _, u := range names {
		us, err := sd.Status(ctx, u)
		if err != nil {
			return fmt.Errorf("status of %s: %w", u, err)
		}
		if us.LoadState != "loaded" {
			continue
		}
		if err := sd.Stop(ctx, u); err != nil {
			return fmt.Errorf("stop %s: %w", u, err)
		}
	}
	return nil
}

// ids are the cluster and member IDs etcd derives for a one-member
// cluster of token, as the restore wrote it.
func ids(token, name, peerURL string) (string, string, error) {
	urls, err := types.NewURLsMap(name + "=" + peerURL)
	if err != nil {
		return "", "", err
	}
	c, err := membership.NewClusterFromURLsMap(zap.NewNop(), token, urls)
	if err != nil {
		return "", "", err
	}
	m := c.MemberByName(name)
	if m == nil {
		return "", "", fmt.Errorf("no member %s in the restored cluster", name)
	}
	return c.ID().String(), m.ID.String(), nil
}
