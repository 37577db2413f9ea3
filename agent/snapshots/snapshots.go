// Package snapshots is the daemon's scheduled etcd snapshots on a
// control-plane node: every etcd.snapshots.interval each node saves one
// from its own member into etcd.snapshots.dir, verified and with its
// metadata (package snapshot), and keeps the newest
// etcd.snapshots.retention. Nodes take theirs one at a time, under a
// cluster-wide lock in etcd (the renewal's kind), so a cluster never
// reads its whole database on every member at once.
package snapshots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/snapshot"
	"github.com/ecom-platform/ecom-agent/status"
)

// Name is the component's name.
const Name = "etcd-snapshots"

// LockKey is the cluster-wide lock a node holds while it takes its
// snapshot.
const LockKey = "/ecom-agent/locks/etcd-snapshot"

const (
	// pace is how often the schedule is checked.
	pace = time.Minute
	// retryAfter is how long a node waits after a failed snapshot.
	// A node that found the lock held tries again on the next check
	// (pace): another node's snapshot takes seconds, and waiting
	// longer would leave this node's schedule behind its peers'.
	retryAfter = 5 * time.Minute
	// saveTimeout bounds one snapshot.
	saveTimeout = 10 * time.Minute
)

// Deps is what the component is built from.
type Deps struct {
	Config *config.Config
	Root   *hostfs.Root
	Log    *slog.Logger
	Now    func() time.Time
	Store  *nodestate.Store
}

// Snapshots is the component.
type Snapshots struct {
	d Deps

	mu       sync.Mutex
	st       status.SnapshotStatus
	nextTry  time.Time
	serving  time.Time // when this node's member first served, for Overdue
	lastSave time.Time
}

var (
	_ component.Component = (*Snapshots)(nil)
	_ component.Reporter  = (*Snapshots)(nil)
	_ component.Paced     = (*Snapshots)(nil)
)

// New returns the component.
func New(d Deps) *Snapshots {
	if d.Now == nil {
		d.Now = time.Now
	}
	sn := d.Config.Etcd.Snapshots
	return &Snapshots{d: d, st: status.SnapshotStatus{Dir: sn.Dir, IntervalSeconds: sn.Interval.Seconds(), Retention: sn.Retention}}
}

// Name names the component.
func (s *Snapshots) Name() string { return Name }

// Ready is always true: nothing waits for snapshots.
func (s *Snapshots) Ready() bool { return true }

// Pace is a minute: snapshots are hours apart.
func (s *Snapshots) Pace() time.Duration { return pace }

// Stop holds nothing between steps.
func (s *Snapshots) Stop(context.Context) error { return nil }

// Report fills in the snapshots' status.
func (s *Snapshots) Report(st *status.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving.IsZero() {
		return
	}
	c := s.st
	if c.Last != nil {
		last := *c.Last
		c.Last = &last
	}
	st.EtcdSnapshots = &c
}

// Step refreshes what the directory holds and takes a snapshot when the
// newest scheduled one is an interval old.
func (s *Snapshots) Step(ctx context.Context) error {
	if !s.d.Store.Phase().EtcdServing() {
		return nil
	}
	now := s.d.Now()
	cfg := s.d.Config.Etcd.Snapshots
	dir := s.d.Root.Path(cfg.Dir)
	entries, err := s.list(dir)
	newest := time.Time{}
	for _, e := range entries {
		if e.Meta.Scheduled && e.Problem == "" && e.Meta.Taken.After(newest) {
			newest = e.Meta.Taken
		}
	}
	s.mu.Lock()
	if s.serving.IsZero() {
		s.serving = now
	}
	s.update(entries, now)
	if err != nil {
		s.st.Error = err.Error()
	}
	due := cfg.Interval.Duration > 0 && now.Sub(newest) >= cfg.Interval.Duration && !now.Before(s.nextTry)
	if due {
		s.nextTry = now.Add(retryAfter)
	}
	s.mu.Unlock()
	if !due {
		return nil
	}
	m, err := s.take(ctx, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case errors.Is(err, concurrency.ErrLocked):
		s.d.Log.Debug("another control-plane node takes its etcd snapshot; trying again at the next check")
		s.nextTry = now.Add(pace)
		return nil
	case err != nil:
		s.st.Error = err.Error()
		s.d.Log.Warn("scheduled etcd snapshot failed", "err", err)
		return nil
	}
	s.st.Error = ""
	s.lastSave = now
	s.d.Log.Info("took a scheduled etcd snapshot", "file", filepath.Join(cfg.Dir, m.Name), "revision", m.Revision, "size", m.Size)
	removed, err := snapshot.Prune(dir, s.d.Config.NodeName, cfg.Retention)
	for _, r := range removed {
		s.d.Log.Info("removed an old scheduled etcd snapshot", "file", r.Path)
	}
	if err != nil {
		s.st.Error = "prune: " + err.Error()
	}
	entries, _ = s.list(dir)
	s.update(entries, now)
	return nil
}

// list is this node's snapshots in dir, which may be storage the
// control-plane nodes share.
func (s *Snapshots) list(dir string) ([]snapshot.Entry, error) {
	es, err := snapshot.List(dir)
	return slices.DeleteFunc(es, func(e snapshot.Entry) bool { return e.Problem == "" && e.Meta.Node != s.d.Config.NodeName }), err
}

// update sets the status from the directory's entries (s.mu held).
func (s *Snapshots) update(entries []snapshot.Entry, now time.Time) {
	s.st.Count = len(entries)
	s.st.Last = nil
	for _, e := range entries {
		if e.Problem == "" {
			s.st.Last = &status.SnapshotInfo{Name: e.Meta.Name, Taken: e.Meta.Taken, Size: e.Meta.Size, Revision: e.Meta.Revision}
			break
		}
	}
	iv := s.d.Config.Etcd.Snapshots.Interval.Duration
	since := s.serving
	if s.st.Last != nil {
		since = s.st.Last.Taken
	}
	s.st.Overdue = iv > 0 && now.Sub(since) > 2*iv
}

// take saves a snapshot of the local member under the cluster-wide lock;
// concurrency.ErrLocked when another node holds it.
func (s *Snapshots) take(ctx context.Context, now time.Time) (snapshot.Meta, error) {
	cfg := s.d.Config
	cli, err := etcdclient.Local(s.d.Root, cfg)
	if err != nil {
		return snapshot.Meta{}, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, saveTimeout)
	defer cancel()
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(30), concurrency.WithContext(sctx))
	if err != nil {
		return snapshot.Meta{}, fmt.Errorf("etcd session for the snapshot lock: %w", err)
	}
	defer session.Close()
	mu := concurrency.NewMutex(session, LockKey)
	if err := mu.TryLock(sctx); err != nil {
		return snapshot.Meta{}, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
	}()
	endpoint := bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)
	path := filepath.Join(s.d.Root.Path(cfg.Etcd.Snapshots.Dir), snapshot.Name(cfg.NodeName, now))
	sealed, err := clusterkeys.Sealed(s.d.Root, cfg)
	if err != nil {
		return snapshot.Meta{}, fmt.Errorf("the cluster's keys a snapshot carries: %w", err)
	}
	return snapshot.Save(sctx, cli, endpoint, path, snapshot.Info{
		Cluster: cfg.ClusterName, Carry: map[string][]byte{clusterkeys.EtcdKey: sealed},
		Node: cfg.NodeName, KubernetesVersion: cfg.KubernetesVersion, AgentVersion: buildinfo.Version, Scheduled: true, Now: now,
	})
}
