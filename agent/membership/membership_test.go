package membership

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// etcdUnit plays systemd for the etcd unit: its state and journal.
type etcdUnit struct {
	st      units.UnitStatus
	journal []string
	stopped int
}

func (f *etcdUnit) Stop(context.Context, string) error { f.stopped++; return nil }
func (f *etcdUnit) Status(context.Context, string) (units.UnitStatus, error) {
	return f.st, nil
}
func (f *etcdUnit) Journal(context.Context, string, int) ([]string, error) { return f.journal, nil }

// started builds and starts the membership of cfg's node on loopback.
func started(t *testing.T, cfg *config.Config) (*Membership, *nodestate.Store, *hostfs.Root, *etcdUnit) {
	t.Helper()
	root := configtest.Root(t)
	store := nodestate.NewStore(root, &nodestate.State{NodeID: uuid.NewString(), Phase: nodestate.PhaseStarting}, nil)
	sd := &etcdUnit{st: units.UnitStatus{Name: bootstrap.EtcdUnit, ActiveState: units.Active}}
	m, err := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store,
		Systemd: sd, FastGossip: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := m.Stop(sctx); err != nil {
			t.Error(err)
		}
		if err := m.Stop(sctx); err != nil {
			t.Errorf("a second Stop: %v", err)
		}
	})
	return m, store, root, sd
}

// expect = 1: one step decides a one-member cluster, new or, with a WAL
// on disk, from the data.
func TestSingleMemberDecision(t *testing.T) {
	for _, wal := range []bool{false, true} {
		cfg := configtest.ControlPlane(t)
		cfg.Expect = 1
		m, store, root, _ := started(t, cfg)
		if wal {
			if err := root.MkdirAll(bootstrap.EtcdDataDir+"/member/wal", 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if m.Ready() {
			t.Fatal("ready before a decision")
		}
		if err := m.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		dec := store.Etcd()
		want := bootstrap.EtcdStartNew
		if wal {
			want = bootstrap.EtcdStartExisting
		}
		if !m.Ready() || dec == nil || dec.State != want || dec.Token == "" || len(dec.Peers) != 1 || dec.Peers[cfg.NodeName] == "" {
			t.Errorf("wal %v: ready %v, decision %+v, want %s with this node only", wal, m.Ready(), dec, want)
		}
	}
}

// expect = 3, alone: the node waits for two more, says so by reason, and
// shows itself in the gossip view.
func TestWaitsForPeers(t *testing.T) {
	m, store, _, _ := started(t, configtest.ControlPlane(t))
	if err := m.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.Ready() || store.Phase() != nodestate.PhaseWaiting {
		t.Fatalf("ready %v, phase %s", m.Ready(), store.Phase())
	}
	var s status.Status
	m.Report(&s)
	if len(s.Conditions) != 1 || s.Conditions[0].Component != Name || s.Conditions[0].Reason != status.ReasonWaitForNodes {
		t.Errorf("conditions %+v", s.Conditions)
	}
	if len(s.Gossip) != 1 || s.Gossip[0].Name != "cp-1" {
		t.Errorf("gossip view %+v", s.Gossip)
	}
}

// A worker takes no part in etcd: it is ready at once.
func TestWorkerIsReady(t *testing.T) {
	m, store, _, _ := started(t, configtest.Worker(t))
	if !m.Ready() {
		t.Fatal("a worker's membership is not ready")
	}
	if err := m.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if store.Etcd() != nil {
		t.Error("a worker decided an etcd membership")
	}
}

// A member is removed only when the member list, read from the other
// members, no longer lists it; etcd's journal (which anyone reaching
// etcd's ports can fill) is a hint, never proof.
func TestRemoved(t *testing.T) {
	m, store, _, sd := started(t, configtest.ControlPlane(t))
	ctx := context.Background()
	self := m.self().PeerURL
	if err := store.Update(func(st *nodestate.State) error {
		st.Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Token: "t",
			Peers: map[string]string{"cp-1": self, "cp-2": "https://10.77.0.12:2380"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lists := 0
	var list [][]string
	var listErr error
	m.memberList = func(context.Context) ([][]string, error) { lists++; return list, listErr }
	planted := []string{"etcd: the member has been permanently removed from the cluster"}

	sd.journal = planted
	if m.Removed(ctx) {
		t.Error("removed, said a running etcd that never restarted")
	}
	sd.st.NRestarts = 2
	list = [][]string{{self}, {"https://10.77.0.12:2380"}}
	if m.Removed(ctx) {
		t.Error("removed on a planted journal line while the member list still lists this member")
	}
	listErr = errors.New("context deadline exceeded")
	if m.Removed(ctx) {
		t.Error("removed while the member list could not be read")
	}
	listErr, list = nil, [][]string{{"https://10.77.0.12:2380"}}
	if !m.Removed(ctx) {
		t.Error("not removed: the journal says so and the member list no longer lists it")
	}
	before := lists
	sd.journal = []string{"etcd: ready to serve"}
	if m.Removed(ctx) || lists != before {
		t.Error("with no hint in the journal, the member list is not even read")
	}
}

func TestWaitReasonsAreDistinct(t *testing.T) {
	seen := map[status.Reason]quorum.WaitReason{}
	for r := quorum.WaitForNodes; r <= quorum.WaitAsStandby; r++ {
		got := waitReason(r)
		if prev, ok := seen[got]; ok {
			t.Errorf("waits %d and %d share reason %s", prev, r, got)
		}
		seen[got] = r
	}
}

// etcd data the agent cannot read counts as data: such a node must never
// found a cluster (nor tell its peers it could).
func TestUnreadableDataCountsAsData(t *testing.T) {
	m, _, root, _ := started(t, configtest.ControlPlane(t))
	if m.hasEtcdData() {
		t.Fatal("a fresh node holds etcd data")
	}
	if _, err := root.WriteFile(bootstrap.EtcdDataDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !m.hasEtcdData() {
		t.Error("unreadable etcd data read as no data")
	}
	m.store.Lock()
	local := m.localLocked(nil)
	meta := m.metaLocked()
	m.store.Unlock()
	if !local.HasEtcdState || !meta.HasEtcdData {
		t.Errorf("the quorum protocol sees no data (local %v, gossip %v)", local.HasEtcdState, meta.HasEtcdData)
	}
}

// A peer's name reaches the operator's terminal through status only
// quoted when it is not a valid node name.
func TestGossipNamesShownSafely(t *testing.T) {
	ms := gossipMembers([]gossip.Member{{Name: "cp-1"}, {Name: "cp-2\x1b[2J"}})
	if ms[0].Name != "cp-1" || strings.ContainsRune(ms[1].Name, 0x1b) || !strings.Contains(ms[1].Name, `\x1b`) {
		t.Errorf("names %q, %q", ms[0].Name, ms[1].Name)
	}
}

// Alive members sharing a node ID are shown with the problem in status;
// a failed one under the ID is not.
func TestDuplicateNodeIDsShown(t *testing.T) {
	const id = "0b7e3c9e-8f63-4b44-9d6c-1c7d3f0a2b11"
	alive := func(name string) gossip.Member {
		return gossip.Member{Name: name, State: gossip.StateAlive, Meta: gossip.Meta{NodeID: id}}
	}
	dead := alive("cp-old")
	dead.State = gossip.StateDead
	ms := gossipMembers([]gossip.Member{alive("cp-1"), alive("cp-9"), dead})
	for _, m := range ms[:2] {
		if !strings.Contains(m.Error, "node ID "+id+" is claimed by cp-1, cp-9") {
			t.Errorf("%s: error %q", m.Name, m.Error)
		}
	}
	if ms[2].Error != "" {
		t.Errorf("a failed member under the ID: %q", ms[2].Error)
	}
	if ms := gossipMembers([]gossip.Member{alive("cp-1"), dead}); ms[0].Error != "" {
		t.Errorf("one alive member under the ID: %q", ms[0].Error)
	}
}
