// Package etcdmember is the component that runs the node's etcd member:
// its unit applied and started (restarted when its config changed), and
// the member watched until it answers. It never blocks and never fails
// for waiting: a member of a cluster waits as long as its peers take.
package etcdmember

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// Name is the component's name.
const Name = "etcd"

// Systemd is what the member asks of systemd.
type Systemd interface {
	units.Starter
	Apply(ctx context.Context, specs []units.Spec) (units.Changes, error)
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

// Membership is what the member needs of the node's membership: whether
// etcd says this member was removed, and setting its data aside then.
type Membership interface {
	Removed(ctx context.Context) bool
	// NotListed reports whether the cluster, with a quorum, no longer
	// lists this node's member.
	NotListed(ctx context.Context) bool
	SetAside(ctx context.Context, reason string) error
}

// Deps is what the member is built from.
type Deps struct {
	Config     *config.Config
	Root       *hostfs.Root
	Log        *slog.Logger
	Store      *nodestate.Store
	Systemd    Systemd
	Membership Membership
	// Written is what the node's last render wrote.
	Written func() []bootstrap.Written
	// Serving asks the local member whether it serves; nil asks etcd
	// (its status through the healthcheck client).
	Serving func(ctx context.Context) error
}

// Member runs the local etcd member.
type Member struct {
	d    Deps
	cond *component.Condition

	mu      sync.Mutex
	applied bool
	jobDone <-chan error
	polls   int
	ready   bool
}

var (
	_ component.Component  = (*Member)(nil)
	_ component.Reporter   = (*Member)(nil)
	_ component.Paced      = (*Member)(nil)
	_ component.Withdrawer = (*Member)(nil)
)

// New returns the component.
func New(d Deps) *Member {
	m := &Member{d: d, cond: component.NewCondition(Name)}
	if m.d.Serving == nil {
		m.d.Serving = m.serving
	}
	return m
}

// serving asks the local etcd member for its status.
func (m *Member) serving(ctx context.Context) error {
	cli, err := etcdclient.Local(m.d.Root, m.d.Config)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = etcdclient.Status(ctx, cli)
	return err
}

// Name names the component.
func (m *Member) Name() string { return Name }

// Step applies and starts the unit once, then asks the member whether it
// serves, until it does.
func (m *Member) Step(ctx context.Context) error {
	m.mu.Lock()
	applied, ready := m.applied, m.ready
	m.mu.Unlock()
	if ready {
		return nil
	}
	if !applied {
		if err := m.start(ctx); err != nil {
			return err
		}
	}
	if m.d.Serving(ctx) == nil {
		m.mu.Lock()
		m.ready = true
		m.mu.Unlock()
		m.cond.Clear()
		if err := m.d.Store.Update(func(st *nodestate.State) error {
			if st.Etcd != nil && st.Etcd.Served.IsZero() {
				st.Etcd.Served = time.Now()
			}
			return nil
		}); err != nil {
			return err
		}
		_, err := m.d.Store.SetPhase(nodestate.PhaseEtcdReady)
		return err
	}
	m.waiting(ctx)
	return nil
}

// start applies the etcd unit and (re)starts etcd when its unit or any
// file it reads changed. etcd is Type=notify and tells systemd it is
// ready only once it is part of a quorum, which for a member of a larger
// cluster can take as long as its peers take to come up: the job runs on
// its own, and Step watches etcd itself.
func (m *Member) start(ctx context.Context) error {
	if err := m.checkData(); err != nil {
		// A member whose data is gone and that the cluster no longer
		// lists (removed while it was away, or dropped by a recover on
		// a survivor) is a new node: it joins again as one.
		if errors.Is(err, errDataGone) && m.d.Membership.NotListed(ctx) {
			m.d.Log.Warn("etcd's data is gone and the cluster no longer lists this member: joining again as a new member")
			return m.d.Membership.SetAside(ctx, "this node's etcd data is gone and the cluster no longer lists its member")
		}
		m.cond.Refuse(status.ReasonDataLost, err.Error())
		return err
	}
	if _, err := m.d.Store.SetPhase(nodestate.PhaseEtcdStart); err != nil {
		return err
	}
	changes, err := m.d.Systemd.Apply(ctx, []units.Spec{bootstrap.EtcdUnitSpec(m.d.Config)})
	if err != nil {
		return err
	}
	restart := slices.Concat(changes.Written, changes.Stale, bootstrap.ChangedUnits(m.d.Written(), []string{bootstrap.EtcdUnit}))
	done, err := units.BringUp(ctx, m.d.Systemd, m.d.Log, bootstrap.EtcdUnit, restart)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.applied, m.jobDone, m.polls = true, done, 0
	m.mu.Unlock()
	return nil
}

// checkData refuses to start etcd on data it cannot read, and on a node
// whose member served before but whose data is gone (an unmounted disk, a
// wiped directory): etcd would found a new, empty cluster under a "new"
// decision, or fail to rejoin under an "existing" one. Either way an
// operator must decide.
func (m *Member) checkData() error {
	dir := m.d.Root.Path(bootstrap.EtcdDataDir)
	has, err := nodestate.HasEtcdData(m.d.Root)
	if err != nil {
		return fmt.Errorf("cannot read etcd's data in %s (%v): etcd is not started on data the agent cannot read; fix the disk or its permissions, then restart ecom-agent", dir, err)
	}
	dec := m.d.Store.Etcd()
	if has || dec == nil || dec.Served.IsZero() {
		return nil
	}
	return fmt.Errorf("%w: this member served since %s, but %s holds no write-ahead log (an unmounted disk, or lost data); "+
		"etcd is not started, lest it found a new, empty cluster: mount the data back and restart ecom-agent, "+
		"or take the node out with `ecom-agent reset --force` and join it again as a new member "+
		"(it does so by itself once the cluster, with a quorum, no longer lists it)",
		errDataGone, dec.Served.UTC().Format(time.RFC3339), dir)
}

// errDataGone is a served member without its data.
var errDataGone = errors.New("etcd's data is gone")

// waiting says whom the member waits for (with its start job's failure,
// if it failed), and every few polls checks whether etcd says this
// member was removed from its cluster: its data is then set aside.
func (m *Member) waiting(ctx context.Context) {
	var peers []string
	if dec := m.d.Store.Etcd(); dec != nil {
		for name := range dec.Peers {
			if name != m.d.Config.NodeName {
				peers = append(peers, name)
			}
		}
		slices.Sort(peers)
	}
	msg := "etcd to start"
	if len(peers) > 0 {
		msg = "etcd to reach a quorum with its peers " + strings.Join(peers, ", ")
	}
	m.mu.Lock()
	m.polls++
	check := m.polls%10 == 0
	var jobErr error
	select {
	case jobErr = <-m.jobDone:
		m.jobDone = nil
	default:
	}
	m.mu.Unlock()
	if jobErr != nil && ctx.Err() == nil {
		journal, _ := m.d.Systemd.Journal(ctx, bootstrap.EtcdUnit, 15)
		m.d.Log.Warn("etcd did not start yet; systemd keeps restarting it", "err", jobErr, "journal", strings.Join(journal, "\n"))
		msg = fmt.Sprintf("%s (its start job: %v)", msg, firstLine(jobErr.Error()))
	}
	if cur, ok := m.cond.Get(); jobErr == nil && ok && strings.HasPrefix(cur.Message, msg+" (its start job") {
		msg = cur.Message // keep the job's failure in view
	}
	m.cond.Set(status.ReasonWaitForEtcd, msg)
	if check && m.d.Membership.Removed(ctx) {
		if err := m.d.Membership.SetAside(ctx, "this etcd member was removed from the cluster"); err != nil {
			m.d.Log.Error("set etcd data aside", "err", err)
		}
	}
}

// Ready reports whether the member served since it was started.
func (m *Member) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready
}

// Pace polls etcd every half second until it serves.
func (m *Member) Pace() time.Duration {
	return component.PaceUntilReady(m.Ready())
}

// Report adds what the member waits for.
func (m *Member) Report(s *status.Status) { m.cond.Report(s) }

// Withdraw forgets the member: its data was set aside (etcd was stopped
// then), and the next membership starts it again.
func (m *Member) Withdraw(context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied, m.ready, m.jobDone = false, false, nil
	m.cond.Clear()
}

// Stop has nothing to release: etcd runs on.
func (m *Member) Stop(context.Context) error { return nil }

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
