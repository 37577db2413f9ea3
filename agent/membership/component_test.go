package membership

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// scriptedSystemd answers for the etcd unit with a set status and
// journal, or set errors.
type scriptedSystemd struct {
	st         units.UnitStatus
	statusErr  error
	journal    []string
	journalErr error
}

func (f *scriptedSystemd) Stop(context.Context, string) error { return nil }
func (f *scriptedSystemd) Status(context.Context, string) (units.UnitStatus, error) {
	return f.st, f.statusErr
}
func (f *scriptedSystemd) Journal(context.Context, string, int) ([]string, error) {
	return f.journal, f.journalErr
}

// loopbackNode is a membership built without a daemon and started on
// loopback.
type loopbackNode struct {
	m      *Membership
	store  *nodestate.Store
	root   *hostfs.Root
	cfg    *config.Config
	cancel context.CancelFunc
}

// newMembership builds the membership of cfg's node in a fresh root; sd
// may be nil (no systemd).
func newMembership(t *testing.T, cfg *config.Config, sd Systemd, now func() time.Time) (*Membership, *nodestate.Store, *hostfs.Root) {
	t.Helper()
	root := configtest.Root(t)
	store := nodestate.NewStore(root, &nodestate.State{NodeID: uuid.NewString(), Phase: nodestate.PhaseStarting}, now)
	m, err := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.DiscardHandler), Store: store,
		Systemd: sd, Now: now, FastGossip: true})
	if err != nil {
		t.Fatal(err)
	}
	return m, store, root
}

// startLoopback builds and starts cfg's membership. The test's cleanup
// ends Start's context and stops it (again, if the test did already).
func startLoopback(t *testing.T, cfg *config.Config, now func() time.Time) *loopbackNode {
	t.Helper()
	m, store, root := newMembership(t, cfg, &scriptedSystemd{st: units.UnitStatus{Name: bootstrap.EtcdUnit, ActiveState: units.Active}}, now)
	return start(t, m, store, root, cfg)
}

// start starts a membership built by the test; the test's cleanup stops it.
func start(t *testing.T, m *Membership, store *nodestate.Store, root *hostfs.Root, cfg *config.Config) *loopbackNode {
	t.Helper()
	if !cfg.IsControlPlane() {
		// What the worker's join stored.
		key, err := gossip.DeriveKey([]byte(configtest.TestClusterSecret))
		if err == nil {
			err = gossip.WriteKeyFile(root, bootstrap.GossipKeyFile, key)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	n := &loopbackNode{m: m, store: store, root: root, cfg: cfg, cancel: cancel}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop ends Start's context and stops the membership, within a bound.
func (n *loopbackNode) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.m.Stop(ctx); err != nil {
		t.Errorf("stop %s: %v", n.cfg.NodeName, err)
	}
}

// waitFor polls cond every 20ms, at most 500 times (10s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// member finds a node in a gossip view by name.
func member(ms []gossip.Member, name string) (gossip.Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return gossip.Member{}, false
}

// expect = 1: the decision is this node alone, persisted with the time it
// was made, and a later step keeps it (same token) and clears any
// condition.
func TestSingleMemberDecisionPersistedAndKept(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cfg.Expect = 1
	at := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	n := startLoopback(t, cfg, func() time.Time { return at })
	ctx := context.Background()
	if n.m.Pace() != component.StartingPace {
		t.Errorf("pace before the decision %s, want %s", n.m.Pace(), component.StartingPace)
	}
	if err := n.m.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.m.Ready() {
		t.Fatal("not ready after the decision")
	}
	dec := n.store.Etcd()
	wantURL := bootstrap.EtcdPeerURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.PeerPort)
	if dec.State != bootstrap.EtcdStartNew || len(dec.Peers) != 1 || dec.Peers["cp-1"] != wantURL || !dec.DecidedAt.Equal(at) {
		t.Errorf("decision %+v, want new, cp-1 at %s only, decided at %s", dec, wantURL, at)
	}
	disk, err := nodestate.ReadState(n.root)
	if err != nil {
		t.Fatal(err)
	}
	if disk.Etcd == nil || disk.Etcd.Token != dec.Token || disk.Etcd.State != dec.State {
		t.Errorf("the decision on disk %+v, in memory %+v", disk.Etcd, dec)
	}
	for range 2 {
		if err := n.m.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if again := n.store.Etcd(); again.Token != dec.Token || again.State != dec.State {
		t.Errorf("later steps changed the decision: %+v, was %+v", again, dec)
	}
	var s status.Status
	n.m.Report(&s)
	if len(s.Conditions) != 0 {
		t.Errorf("conditions once decided: %+v", s.Conditions)
	}
	if n.m.Pace() != component.DefaultPace {
		t.Errorf("pace once decided %s, want %s", n.m.Pace(), component.DefaultPace)
	}
}

// expect = 3, alone: the phase is advertised to the peers, and status
// shows the node itself alive in the gossip view and a wait that is not
// a refusal.
func TestWaitingNodeAdvertisesItsPhase(t *testing.T) {
	n := startLoopback(t, configtest.ControlPlane(t), nil)
	for range 2 {
		if err := n.m.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n.m.Ready() || n.store.Etcd() != nil {
		t.Fatalf("ready %v, decision %+v, with one node of three", n.m.Ready(), n.store.Etcd())
	}
	if got := n.m.gossip().LocalMeta(); got.Phase != string(nodestate.PhaseWaiting) || got.Role != config.RoleControlPlane || got.Expect != 3 {
		t.Errorf("advertised %+v, want control-plane waiting-for-peers expecting 3", got)
	}
	// The view's own entry follows the metadata once it is broadcast.
	waitFor(t, "this node's entry of the view to show its phase", func() bool {
		m, ok := member(n.m.Members(), "cp-1")
		return ok && m.Meta.Phase == string(nodestate.PhaseWaiting)
	})
	var s status.Status
	n.m.Report(&s)
	if len(s.Conditions) != 1 {
		t.Fatalf("conditions %+v", s.Conditions)
	}
	if c := s.Conditions[0]; c.Component != "membership" || c.Reason != status.ReasonWaitForNodes || c.Refused || c.Message == "" {
		t.Errorf("condition %+v", c)
	}
	if s.Refused {
		t.Error("status says refused")
	}
	if len(s.Gossip) != 1 {
		t.Fatalf("gossip view %+v", s.Gossip)
	}
	if g := s.Gossip[0]; g.Name != "cp-1" || g.Address != "127.0.0.1" || g.Role != string(config.RoleControlPlane) ||
		g.State != gossip.StateAlive.String() || g.Phase != string(nodestate.PhaseWaiting) {
		t.Errorf("this node in the gossip view: %+v", g)
	}
}

// A worker is ready at once; a step publishes its metadata (a phase set
// without the store's hooks reaches gossip) and does nothing else.
func TestWorkerStepPublishesMeta(t *testing.T) {
	n := startLoopback(t, configtest.Worker(t), nil)
	if !n.m.Ready() {
		t.Fatal("a worker's membership is not ready before a step")
	}
	meta := n.m.gossip().LocalMeta()
	if meta.Role != config.RoleWorker || meta.RPCAddr.IsValid() || meta.Phase != string(nodestate.PhaseStarting) {
		t.Errorf("initial metadata %+v", meta)
	}
	n.store.Lock()
	n.store.Locked().Phase = nodestate.PhaseWorkerWaiting
	n.store.Unlock()
	if err := n.m.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := n.m.gossip().LocalMeta(); got.Phase != string(nodestate.PhaseWorkerWaiting) || got.RPCAddr != meta.RPCAddr {
		t.Errorf("after a step: %+v", got)
	}
	if n.store.Etcd() != nil || n.store.Phase() != nodestate.PhaseWorkerWaiting {
		t.Errorf("a worker's step changed its state: decision %+v, phase %s", n.store.Etcd(), n.store.Phase())
	}
	var s status.Status
	n.m.Report(&s)
	if len(s.Conditions) != 0 {
		t.Errorf("a worker's conditions: %+v", s.Conditions)
	}
}

// Stop leaves gossip, so a peer lists the node as left (not dead), and
// may be called again.
func TestStopLeavesGossip(t *testing.T) {
	cp := startLoopback(t, configtest.ControlPlane(t), nil)
	wcfg := configtest.Worker(t)
	wcfg.Gossip.Join = []string{cp.m.gossip().Addr().String()}
	w := startLoopback(t, wcfg, nil)
	waitFor(t, "the two nodes to see each other", func() bool {
		a, ok1 := member(cp.m.Members(), "w-1")
		b, ok2 := member(w.m.Members(), "cp-1")
		return ok1 && ok2 && a.State == gossip.StateAlive && b.State == gossip.StateAlive
	})

	w.stop(t)
	waitFor(t, "the control-plane node to list the worker as left", func() bool {
		m, ok := member(cp.m.Members(), "w-1")
		return ok && m.State == gossip.StateLeft
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.m.Stop(ctx); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	// The control-plane node still runs and sees itself alive.
	if m, ok := member(cp.m.Members(), "cp-1"); !ok || m.State != gossip.StateAlive {
		t.Errorf("cp-1 in its own view: %+v", m)
	}
}

// A membership that never started stops at once, twice.
func TestStopBeforeStart(t *testing.T) {
	m, _, _ := newMembership(t, configtest.ControlPlane(t), nil, nil)
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := m.Stop(ctx)
		cancel()
		if err != nil {
			t.Errorf("Stop %d: %v", i+1, err)
		}
	}
}

// Removed takes etcd's journal at its word only from a unit that
// restarted or is not active, and only for the lines etcd writes when its
// member was removed.
func TestRemovedNeedsUnitAndJournal(t *testing.T) {
	const (
		permanently = `{"level":"warn","msg":"the member has been permanently removed from the cluster"}`
		wasRemoved  = `{"level":"fatal","msg":"failed to start: member was removed"}`
		other       = `{"level":"info","msg":"ready to serve client requests"}`
	)
	unit := func(s units.ActiveState, restarts uint32) units.UnitStatus {
		return units.UnitStatus{Name: bootstrap.EtcdUnit, ActiveState: s, NRestarts: restarts}
	}
	for _, tc := range []struct {
		name string
		sd   scriptedSystemd
		want bool
	}{
		{"active, never restarted", scriptedSystemd{st: unit(units.Active, 0), journal: []string{permanently, wasRemoved}}, false},
		{"active, restarted, permanently removed", scriptedSystemd{st: unit(units.Active, 1), journal: []string{other, permanently}}, true},
		{"active, restarted, member was removed", scriptedSystemd{st: unit(units.Active, 3), journal: []string{wasRemoved}}, true},
		{"inactive", scriptedSystemd{st: unit(units.Inactive, 0), journal: []string{wasRemoved}}, true},
		{"failed", scriptedSystemd{st: unit(units.Failed, 0), journal: []string{permanently}}, true},
		{"activating", scriptedSystemd{st: unit(units.Activating, 0), journal: []string{permanently}}, true},
		{"failed, other lines", scriptedSystemd{st: unit(units.Failed, 5), journal: []string{other, other}}, false},
		{"failed, empty journal", scriptedSystemd{st: unit(units.Failed, 5)}, false},
		{"status unreadable", scriptedSystemd{statusErr: errors.New("no bus"), journal: []string{permanently}}, false},
		{"journal unreadable", scriptedSystemd{st: unit(units.Failed, 1), journalErr: errors.New("no journal")}, false},
	} {
		sd := tc.sd
		m, _, _ := newMembership(t, configtest.ControlPlane(t), &sd, nil)
		// The member list, read through the other members, no longer
		// lists this node: the journal's hint is all that decides here.
		m.memberList = func(context.Context) ([][]string, error) { return [][]string{{"https://10.77.0.12:2380"}}, nil }
		if got := m.Removed(context.Background()); got != tc.want {
			t.Errorf("%s: removed %v, want %v", tc.name, got, tc.want)
		}
	}
	m, _, _ := newMembership(t, configtest.ControlPlane(t), nil, nil)
	if m.Removed(context.Background()) {
		t.Error("removed, without systemd")
	}
}

// Every formation wait has a status reason of its own, from the table
// (no wait falls back to the default), and a wait unknown to this agent
// reads as waiting for nodes.
func TestEveryWaitHasItsOwnReason(t *testing.T) {
	want := map[quorum.WaitReason]status.Reason{
		quorum.WaitForNodes:   status.ReasonWaitForNodes,
		quorum.WaitForSettle:  status.ReasonWaitForSettle,
		quorum.WaitForSeed:    status.ReasonWaitForSeed,
		quorum.WaitForPromise: status.ReasonWaitForPromise,
		quorum.WaitForRetry:   status.ReasonWaitForRetry,
		quorum.WaitForCluster: status.ReasonWaitForCluster,
		quorum.WaitAsStandby:  status.ReasonStandby,
	}
	if len(waitReasons) != len(want) {
		t.Errorf("%d waits have a reason, want %d", len(waitReasons), len(want))
	}
	seen := map[status.Reason]quorum.WaitReason{}
	for r := quorum.WaitForNodes; r <= quorum.WaitAsStandby; r++ {
		if _, ok := waitReasons[r]; !ok {
			t.Errorf("wait %d has no reason of its own", r)
		}
		got := waitReason(r)
		if got != want[r] || got == "" {
			t.Errorf("wait %d: reason %q, want %q", r, got, want[r])
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("waits %d and %d share reason %q", prev, r, got)
		}
		seen[got] = r
	}
	for _, r := range []quorum.WaitReason{0, quorum.WaitAsStandby + 1} {
		if got := waitReason(r); got != status.ReasonWaitForNodes {
			t.Errorf("unknown wait %d: reason %q", r, got)
		}
	}
	if waitPhase(true) != nodestate.PhaseStandby || waitPhase(false) != nodestate.PhaseWaiting {
		t.Error("wait phases")
	}
}

// The gossip port and RPC port the test configs give are the ones the
// membership listens on, on loopback only.
func TestListensOnConfiguredLoopbackPorts(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	n := startLoopback(t, cfg, nil)
	if got, want := n.m.gossip().Addr(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cfg.Gossip.Port)); got != want {
		t.Errorf("gossip on %s, want %s", got, want)
	}
	if got, want := n.m.gossip().LocalMeta().RPCAddr.String(), net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Gossip.RPCPort)); got != want {
		t.Errorf("RPC endpoint advertised %s, want %s", got, want)
	}
}

// A worker takes no part in the formation: it holds no key of the
// agents' request channel, and serves no RPC endpoint at all.
func TestWorkerServesNoRPC(t *testing.T) {
	w := startLoopback(t, configtest.Worker(t), nil)
	if a := w.m.gossip().LocalMeta().RPCAddr; a.IsValid() {
		t.Errorf("a worker advertises an RPC endpoint %s", a)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(w.cfg.Gossip.RPCPort))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Errorf("something listens on the worker's RPC port %s", addr)
	}
	if w.store.Snapshot().Quorum.Commit != nil {
		t.Error("a worker holds a commit")
	}
}

// A node holding only the cluster secret (every worker does) gets nothing
// from a control-plane node's formation and join calls, whatever it
// claims: they are sealed with the control-plane key, so it can neither
// promise, commit, nor be let into etcd and handed the CA keys.
func TestClusterSecretAloneOpensNoControlPlaneCall(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cp := startLoopback(t, cfg, nil)
	addr := cp.m.gossip().LocalMeta().RPCAddr.String()
	id := cp.store.Snapshot().NodeID
	for name, opts := range map[string]peer.Options{
		// A worker's agent, as shipped.
		"worker": {Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: uuid.NewString(), NodeName: "w-1",
			ControlPlaneMethods: controlPlaneMethods},
		// A modified agent that seals everything with the cluster secret
		// and calls itself cp-2.
		"impostor": {Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: uuid.NewString(), NodeName: "cp-2"},
	} {
		cli, err := peer.NewClient(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, method := range controlPlaneMethods {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var rep joinReply
			err := cli.CallNode(ctx, addr, id, method, quorum.JoinRequest{ClusterName: cfg.ClusterName}, &rep)
			cancel()
			if err == nil || rep.Shared != nil {
				t.Errorf("%s: %s answered (%+v)", name, method, rep)
			}
			if name == "impostor" && !errors.Is(err, peer.ErrUnauthorized) {
				t.Errorf("%s: %s: %v, want ErrUnauthorized", name, method, err)
			}
		}
		cli.Close()
	}
	if c := cp.store.Snapshot().Quorum.Commit; c != nil {
		t.Errorf("the control-plane node holds commit %s", c.ID())
	}
}

// maintain with a hint of removal in etcd's journal reads the member list
// through the other members without holding the store's lock (which the
// read takes): it returns instead of deadlocking, and removes nothing
// while the list cannot be read.
func TestMaintainWithRemovalHintReturns(t *testing.T) {
	sd := scriptedSystemd{st: units.UnitStatus{Name: bootstrap.EtcdUnit, ActiveState: units.Failed, NRestarts: 3},
		journal: []string{`{"level":"fatal","msg":"failed to start: member was removed"}`}}
	n := startLoopback(t, configtest.ControlPlane(t), nil)
	m, store := n.m, n.store
	m.sd = &sd
	if err := store.Update(func(st *nodestate.State) error {
		st.Phase = nodestate.PhaseAPIReady
		st.Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Token: "t",
			Peers: map[string]string{"cp-1": "https://10.77.0.11:2380", "cp-2": "https://127.0.0.1:1"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.maintain(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("maintain did not return within 30s: deadlocked on the store's lock")
	}
	if store.Etcd() == nil {
		t.Error("the etcd decision was set aside on a journal line alone")
	}
}

// Peers claiming the founders' node IDs (anyone with the cluster secret
// can gossip so) and another commit make nothing set aside: the founders
// themselves must confirm they moved on, over the control-plane channel,
// and impostors cannot answer it.
func TestImpostorsCannotOrphanACommit(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	self := uuid.NewString()
	store := nodestate.NewStore(root, &nodestate.State{NodeID: self, Phase: nodestate.PhaseWaiting}, nil)
	member := func(id, name string) quorum.Member {
		return quorum.Member{ID: quorum.NodeID(id), Name: name, PeerURL: "https://10.77.0." + name[len(name)-1:] + ":2380"}
	}
	commit := quorum.Commit{Token: "00112233445566778899aabbccddeeff", Proposal: quorum.Proposal{
		Seed: quorum.NodeID(self), Attempt: 1, ClusterName: cfg.ClusterName, Expect: 3,
		Members: []quorum.Member{member(self, "cp-1"), member("id-2", "cp-2"), member("id-3", "cp-3")}}}
	if err := store.Update(func(st *nodestate.State) error { st.Quorum.Commit = &commit; return nil }); err != nil {
		t.Fatal(err)
	}
	impostors := func(peers []quorum.Peer) []quorum.Peer {
		for _, mb := range commit.Proposal.Members[1:] {
			peers = append(peers, quorum.Peer{Member: mb, ControlPlane: true, ClusterName: cfg.ClusterName, Expect: 3,
				CommitID: "ffffffffffffffffffffffffffffffff", Status: quorum.StatusAlive, Since: time.Now().Add(-time.Hour)})
		}
		return peers
	}
	m, err := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.DiscardHandler), Store: store, FastGossip: true,
		Hooks: Hooks{ViewFilter: impostors}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, m, store, root, cfg)
	if err := m.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := store.Snapshot().Quorum.Commit; c == nil || c.ID() != commit.ID() {
		t.Fatalf("the commit was set aside on impostors' word: %+v", c)
	}
	if cond, ok := m.cond.Get(); !ok || !strings.Contains(cond.Message, "did not confirm it themselves") {
		t.Errorf("condition %+v, want the unconfirmed set-aside explained", cond)
	}
}

// Before removing a member whose host is back without etcd data, the
// reconciler hears it from that host over the control-plane channel: a
// control-plane node without data confirms; one with a commit does not;
// a worker gossiping under the name (no control-plane key) cannot.
func TestStaleRemovalConfirmedByTheHost(t *testing.T) {
	cp := startLoopback(t, configtest.ControlPlane(t), nil)
	join := []string{cp.m.gossip().Addr().String()}
	cp2cfg := configtest.Parse(t, strings.Replace(configtest.ControlPlaneTOML(t), `node_name = "cp-1"`, `node_name = "cp-2"`, 1))
	cp2cfg.Gossip.Join = join
	cp2 := startLoopback(t, cp2cfg, nil)
	wcfg := configtest.Worker(t)
	wcfg.Gossip.Join = join
	w := startLoopback(t, wcfg, nil)
	waitFor(t, "cp-1 to see cp-2 with its RPC address, and w-1", func() bool {
		a, ok1 := member(cp.m.Members(), "cp-2")
		_, ok2 := member(cp.m.Members(), "w-1")
		return ok1 && ok2 && a.Meta.RPCAddr.IsValid()
	})
	ctx := context.Background()
	host := func(n *loopbackNode, name string) quorum.Member {
		return quorum.Member{ID: quorum.NodeID(n.store.Snapshot().NodeID), Name: name}
	}
	if why, ok := cp.m.confirmWithoutData(ctx, host(cp2, "cp-2")); !ok {
		t.Errorf("a control-plane node without data: %s", why)
	}
	if why, ok := cp.m.confirmWithoutData(ctx, host(w, "cp-2")); ok || !strings.Contains(why, "did not confirm it over the control-plane channel") {
		t.Errorf("a worker under the name: confirmed %v (%s)", ok, why)
	}
	commit := quorum.Commit{Token: "00112233445566778899aabbccddeeff"}
	if err := cp2.store.Update(func(st *nodestate.State) error { st.Quorum.Commit = &commit; return nil }); err != nil {
		t.Fatal(err)
	}
	if why, ok := cp.m.confirmWithoutData(ctx, host(cp2, "cp-2")); ok || !strings.Contains(why, "holds etcd data") {
		t.Errorf("a host holding a commit: confirmed %v (%s)", ok, why)
	}
}
