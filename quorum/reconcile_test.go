package quorum

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// etcdMember is node i's member in etcd: a started voter, reachable.
func etcdMember(i int, opts ...func(*EtcdMember)) EtcdMember {
	m := EtcdMember{ID: uint64(0x100 + i), Name: member(i).Name, PeerURLs: []string{member(i).PeerURL}, Started: true, Active: true}
	for _, o := range opts {
		o(&m)
	}
	return m
}

// inactive: etcd has had no transport to the member since since.
func inactive(since time.Time) func(*EtcdMember) {
	return func(m *EtcdMember) { m.Active, m.InactiveSince = false, since }
}

// learner: a learner added for node i; ready once caught up. It has no
// name until it starts.
func learner(ready bool) func(*EtcdMember) {
	return func(m *EtcdMember) {
		m.IsLearner, m.ReadyToPromote = true, ready
		if !ready {
			m.Name, m.Started = "", false
		}
	}
}

// reasonOf returns a's Reason and a copy of a without it, to compare the
// rest exactly.
func reasonOf(a Action) (Action, string) {
	switch a := a.(type) {
	case Steady:
		return Steady{}, a.Reason
	case Hold:
		r := a.Reason
		a.Reason = ""
		return a, r
	case AddLearner:
		r := a.Reason
		a.Reason = ""
		return a, r
	case Promote:
		r := a.Reason
		a.Reason = ""
		return a, r
	case Remove:
		r := a.Reason
		a.Reason = ""
		return a, r
	case Alert:
		return Alert{}, a.Reason
	}
	return a, ""
}

func TestReconcile(t *testing.T) {
	timing := DefaultTiming()
	now := t0.Add(time.Hour)
	longAgo := now.Add(-timing.DeadAfter)              // failed exactly DeadAfter ago: dead
	lately := now.Add(-timing.DeadAfter + time.Second) // failed a second short of it
	failed := func(since time.Time) func(*Peer) { return withStatus(StatusDead, since) }
	// Healthy members cp-1 and cp-2, and their nodes in gossip.
	healthy := []EtcdMember{etcdMember(1), etcdMember(2)}
	up := []Peer{peer(1, withData()), peer(2, withData())}
	with := func(ms []EtcdMember, more ...EtcdMember) []EtcdMember { return append(slices.Clone(ms), more...) }
	also := func(ps []Peer, more ...Peer) []Peer { return append(slices.Clone(ps), more...) }
	deadVoter := etcdMember(3, inactive(longAgo))
	// cp-3's host reinstalled: the node the agent must hear from before
	// removing the stale member.
	newCP3 := member(3)
	newCP3.ID = "id-3-new"
	deadPeer := peer(3, withData(), failed(longAgo))

	tests := []struct {
		name       string
		members    []EtcdMember
		peers      []Peer
		lastChange time.Time
		want       Action
		reason     string // a substring of the Reason
	}{{
		name:    "three healthy voters: steady",
		members: with(healthy, etcdMember(3)),
		peers:   also(up, peer(3, withData())),
		want:    Steady{}, reason: "3 voters healthy, target 3",
	}, {
		name:    "extra control-plane nodes: steady, listed as standby",
		members: with(healthy, etcdMember(3)),
		peers:   also(up, peer(3, withData()), peer(5), peer(4)),
		want:    Steady{}, reason: "standby: cp-4, cp-5",
	}, {
		name:    "quorum lost (one of three voters reachable): alert, no change",
		members: []EtcdMember{etcdMember(1), etcdMember(2, inactive(now.Add(-time.Minute))), etcdMember(3, inactive(now.Add(-time.Minute)))},
		peers:   also(up, peer(3, withData()), peer(4)),
		want:    Alert{}, reason: "no quorum: 1 of 3 voters reachable (unreachable: cp-2, cp-3)",
	}, {
		name:    "case 8: two of three dead past DeadAfter, a standby waiting: alert only",
		members: []EtcdMember{etcdMember(1), etcdMember(2, inactive(longAgo)), deadVoter},
		peers:   []Peer{peer(1, withData()), peer(2, withData(), failed(longAgo)), deadPeer, peer(4), peer(5)},
		want:    Alert{}, reason: "no quorum",
	}, {
		name:       "a change is due but the last one was within ChangeGap: hold",
		members:    with(healthy, deadVoter),
		peers:      also(up, deadPeer, peer(4)),
		lastChange: now.Add(-time.Second),
		want:       Hold{Until: now.Add(-time.Second).Add(timing.ChangeGap)}, reason: "less than 10s ago",
	}, {
		name:       "ChangeGap over: the change is made",
		members:    with(healthy, deadVoter),
		peers:      also(up, deadPeer, peer(4)),
		lastChange: now.Add(-timing.ChangeGap),
		want:       Remove{MemberID: 0x103, Name: "cp-3"}, reason: "removed before cp-4 is added",
	}, {
		name:    "fewer voters than the target, a standby: add it as a learner",
		members: healthy,
		peers:   also(up, peer(5), peer(4)),
		want:    AddLearner{Member: member(4)}, reason: "2 voters, target 3",
	}, {
		name:    "fewer voters than the target, no standby: steady",
		members: healthy,
		peers:   also(up, peer(4, asWorker()), peer(5, withName("staging")), peer(6, withExpect(5)), peer(7, withStatus(StatusSuspect, t0))),
		want:    Steady{}, reason: "no standby",
	}, {
		name:    "learner catching up: hold",
		members: with(healthy, etcdMember(4, learner(false))),
		peers:   also(up, peer(4)),
		want:    Hold{}, reason: "learner cp-4 is catching up",
	}, {
		name:    "learner catching up while a voter is dead: hold, one change at a time",
		members: with(healthy, deadVoter, etcdMember(4, learner(false))),
		peers:   also(up, deadPeer, peer(4)),
		want:    Hold{}, reason: "catching up",
	}, {
		name:    "learner ready, fewer voters than the target: promote",
		members: with(healthy, etcdMember(4, learner(true))),
		peers:   also(up, peer(4)),
		want:    Promote{MemberID: 0x104, Name: "cp-4"}, reason: "2 voters, target 3",
	}, {
		name:    "learner ready, voters at the target: removed, back to standby",
		members: with(healthy, etcdMember(3), etcdMember(4, learner(true))),
		peers:   also(up, peer(3, withData()), peer(4)),
		want:    Remove{MemberID: 0x104, Name: "cp-4"}, reason: "not needed",
	}, {
		name:    "3 voters, one dead for DeadAfter, a standby: remove the dead voter first (etcd refuses an add with 2 of 3 reachable)",
		members: with(healthy, deadVoter),
		peers:   also(up, deadPeer, peer(5), peer(4)),
		want:    Remove{MemberID: 0x103, Name: "cp-3"}, reason: "cp-3 has been failed in gossip for 5m0s and etcd has no transport to it; removed before cp-4 is added, since etcd refuses to add a member while only 2 of 3 voters are reachable",
	}, {
		name:    "5 voters, one dead for DeadAfter, a standby: add the standby as a learner first (4 of 5 reachable is a quorum of 6)",
		members: with(healthy, deadVoter, etcdMember(5), etcdMember(6)),
		peers:   also(up, deadPeer, peer(5, withData()), peer(6, withData()), peer(4)),
		want:    AddLearner{Member: member(4)}, reason: "to replace cp-3: cp-3 has been failed in gossip for 5m0s",
	}, {
		name:    "voter dead for DeadAfter, no standby: alert, no change",
		members: with(healthy, deadVoter),
		peers:   also(up, deadPeer),
		want:    Alert{}, reason: "no standby",
	}, {
		name:    "voter dead, its replacement caught up: remove the dead voter (quorum kept)",
		members: with(healthy, deadVoter, etcdMember(4, learner(true))),
		peers:   also(up, deadPeer, peer(4)),
		want:    Remove{MemberID: 0x103, Name: "cp-3"}, reason: "learner cp-4 replaces it",
	}, {
		name:    "voter failed in gossip a second short of DeadAfter: no change",
		members: with(healthy, etcdMember(3, inactive(lately))),
		peers:   also(up, peer(3, withData(), failed(lately)), peer(4)),
		want:    Steady{},
	}, {
		name:    "voter failed in gossip for long, but etcd still has a transport to it: no change",
		members: with(healthy, etcdMember(3)),
		peers:   also(up, deadPeer, peer(4)),
		want:    Steady{},
	}, {
		name:    "voter unreachable in etcd for long, but alive in gossip: not removed",
		members: with(healthy, etcdMember(3, inactive(longAgo))),
		peers:   also(up, peer(3, withData(), withStatus(StatusAlive, longAgo.Add(-time.Hour))), peer(4)),
		want:    Steady{},
	}, {
		name:    "voter unreachable for DeadAfter, its node unknown to gossip: dead",
		members: with(healthy, deadVoter),
		peers:   also(up, peer(4)),
		want:    Remove{MemberID: 0x103, Name: "cp-3"}, reason: "removed before cp-4 is added",
	}, {
		name:    "voter unreachable a second short of DeadAfter, its node unknown to gossip: no change",
		members: with(healthy, etcdMember(3, inactive(lately))),
		peers:   also(up, peer(4)),
		want:    Steady{},
	}, {
		name:    "case 9: host reinstalled (same name, new node ID, alive without etcd data, back after the member went silent): remove the stale member",
		members: with(healthy, etcdMember(3, inactive(longAgo))),
		peers: also(up, peer(3, withData(), failed(now.Add(-time.Minute))),
			peer(3, withID("id-3-new"), withStatus(StatusAlive, now.Add(-30*time.Second))), peer(4)),
		want: Remove{MemberID: 0x103, Name: "cp-3", Confirm: &newCP3}, reason: "back without etcd data (reinstalled or wiped; node ID now id-3-new); the host joins again",
	}, {
		name:    "case 9, the old entry gone from gossip: remove the stale member",
		members: with(healthy, etcdMember(3, inactive(longAgo))),
		peers:   also(up, peer(3, withID("id-3-new"), withStatus(StatusAlive, now.Add(-30*time.Second)))),
		want:    Remove{MemberID: 0x103, Name: "cp-3", Confirm: &newCP3}, reason: "reinstalled",
	}, {
		// A reinstalled host can be back before gossip declared it
		// dead, so its entry may be alive since before the member went
		// silent: still stale once silent for DeadAfter.
		name:    "host back without etcd data before gossip saw it die (fast reinstall): remove the stale member",
		members: with(healthy, etcdMember(3, inactive(longAgo))),
		peers:   also(up, peer(3, withID("id-3-new"), withStatus(StatusAlive, longAgo.Add(-time.Minute)))),
		want:    Remove{MemberID: 0x103, Name: "cp-3", Confirm: &newCP3}, reason: "back without etcd data",
	}, {
		// Anyone with the cluster secret can gossip under a member's
		// name without data: that alone never removes a member sooner
		// than a dead one would be.
		name:    "member silent for a second less than DeadAfter, a host under its name without data: not yet stale",
		members: with(healthy, etcdMember(3, inactive(lately))),
		peers:   also(up, peer(3, withID("id-3-new"), withStatus(StatusAlive, now.Add(-time.Minute)))),
		want:    Steady{},
	}, {
		name:    "member silent for less than Settle, host back without data: not yet stale",
		members: with(healthy, etcdMember(3, inactive(now.Add(-timing.Settle+time.Second)))),
		peers:   also(up, peer(3, withID("id-3-new"), withStatus(StatusAlive, now.Add(-time.Second)))),
		want:    Steady{},
	}, {
		name:    "learner whose node has been dead for DeadAfter: removed (it does not count for quorum)",
		members: with(healthy, etcdMember(3), etcdMember(4, learner(false), inactive(longAgo))),
		peers:   also(up, peer(3, withData()), peer(4, failed(longAgo))),
		want:    Remove{MemberID: 0x104, Name: "cp-4"}, reason: "a learner does not count for quorum",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ReconcileInput{Self: self(1), Members: tt.members, Peers: tt.peers, LastChange: tt.lastChange, Now: now, Timing: timing}
			before := fmt.Sprintf("%#v", in)
			a := Reconcile(in)
			got, reason := reasonOf(a)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Reconcile = %v\n(-want +got):\n%s", a, diff)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q lacks %q", reason, tt.reason)
			}
			if after := fmt.Sprintf("%#v", in); after != before {
				t.Errorf("Reconcile modified its input")
			}
		})
	}
}

// Case 8 over time: a voter dies; once gossip has reported it failed for
// DeadAfter (and etcd has no transport to it), a standby replaces it one
// change at a time: learner added, caught up, dead voter removed, learner
// promoted. Quorum holds at every step, and no change comes within
// ChangeGap of the last.
func TestReconcileReplacesDeadVoter(t *testing.T) {
	timing := DefaultTiming()
	died := t0.Add(time.Hour)
	members := []EtcdMember{etcdMember(1), etcdMember(2), etcdMember(3)}
	peers := []Peer{peer(1, withData()), peer(2, withData()), peer(3, withData()), peer(4), peer(5)}
	members[2].Active, members[2].InactiveSince = false, died
	peers[2].Status, peers[2].Since = StatusDead, died
	var last time.Time
	var log []string
	for now := died; now.Before(died.Add(time.Hour)); now = now.Add(time.Second) {
		a := Reconcile(ReconcileInput{Self: self(1), Members: members, Peers: peers, LastChange: last, Now: now, Timing: timing})
		var change string
		switch a := a.(type) {
		case AddLearner:
			members = append(members, EtcdMember{ID: 0x200, PeerURLs: []string{a.Member.PeerURL}, IsLearner: true})
			change = "add learner " + a.Member.Name
		case Promote:
			i := slices.IndexFunc(members, func(m EtcdMember) bool { return m.ID == a.MemberID })
			members[i].IsLearner, members[i].ReadyToPromote = false, false
			change = fmt.Sprintf("promote %s (%x)", a.Name, a.MemberID)
		case Remove:
			members = slices.DeleteFunc(members, func(m EtcdMember) bool { return m.ID == a.MemberID })
			change = fmt.Sprintf("remove %s (%x)", a.Name, a.MemberID)
		case Alert:
			t.Fatalf("%v at +%v", a, now.Sub(died))
		default:
			// The learner starts, then catches up a little later.
			for i, m := range members {
				if m.IsLearner && !m.Started && now.Sub(last) >= 2*time.Second {
					members[i].Name, members[i].Started, members[i].Active = "cp-4", true, true
				} else if m.IsLearner && m.Started && now.Sub(last) >= 5*time.Second {
					members[i].ReadyToPromote = true
				}
			}
			continue
		}
		if !last.IsZero() && now.Sub(last) < timing.ChangeGap {
			t.Errorf("%v only %v after the last change", a, now.Sub(last))
		}
		last = now
		log = append(log, fmt.Sprintf("+%v %s", now.Sub(died), change))
		voters, reachable := 0, 0
		for _, m := range members {
			if !m.IsLearner {
				voters++
				if m.Active {
					reachable++
				}
			}
		}
		if reachable < majority(voters) {
			t.Fatalf("%v lost quorum: %d of %d voters reachable", a, reachable, voters)
		}
	}
	// etcd refuses to add even a learner while only 2 of 3 voters are
	// reachable, so the dead voter goes first.
	want := []string{
		"+5m0s remove cp-3 (103)",
		"+5m10s add learner cp-4",
		"+5m20s promote cp-4 (200)",
	}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if a := Reconcile(ReconcileInput{Self: self(1), Members: members, Peers: peers, LastChange: last, Now: died.Add(2 * time.Hour), Timing: timing}); !strings.Contains(a.String(), "3 voters healthy, target 3; standby: cp-5") {
		t.Errorf("in the end: %v", a)
	}
}

func TestTargetSize(t *testing.T) {
	for expect, want := range map[int]int{0: 1, 1: 1, 2: 1, 3: 3, 4: 3, 5: 5, 6: 5, 7: 7} {
		if got := targetSize(expect); got != want {
			t.Errorf("targetSize(%d) = %d, want %d", expect, got, want)
		}
	}
}

// Case 13: no code path issues a voter MemberAdd. The package never calls
// etcd itself (it imports no etcd package), and its only output towards
// etcd's membership is an Action; so this reads the package's non-test
// source and checks the imports, that the Action types are exactly these
// six (of which only AddLearner adds a member), and that AddLearner
// carries nothing that could turn it into a voter add.
func TestNoActionAddsAVoter(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	actions := map[string]bool{}
	structs := map[string]*ast.StructType{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.Contains(imp.Path.Value, "etcd") {
				t.Errorf("%s imports %s: membership changes must go through an Action", name, imp.Path.Value)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Recv != nil && n.Name.Name == "isAction" {
					typ := n.Recv.List[0].Type
					if star, ok := typ.(*ast.StarExpr); ok {
						typ = star.X
					}
					actions[typ.(*ast.Ident).Name] = true
				}
			case *ast.TypeSpec:
				if st, ok := n.Type.(*ast.StructType); ok {
					structs[n.Name.Name] = st
				}
			}
			return true
		})
	}
	want := []string{"AddLearner", "Alert", "Hold", "Promote", "Remove", "Steady"}
	if got := slices.Sorted(maps.Keys(actions)); !slices.Equal(got, want) {
		t.Errorf("Action types %v, want exactly %v: a new Action must not add a voter", got, want)
	}
	var fields []string
	for _, f := range structs["AddLearner"].Fields.List {
		for _, n := range f.Names {
			fields = append(fields, n.Name+" "+exprString(f.Type))
		}
	}
	if want := []string{"Member Member", "Reason string"}; !slices.Equal(fields, want) {
		t.Errorf("AddLearner has fields %v, want %v: nothing may make it add a voter", fields, want)
	}
}

// exprString renders a field type for TestNoActionAddsAVoter.
func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	}
	return fmt.Sprintf("%T", e)
}

func TestActionStrings(t *testing.T) {
	for _, tt := range []struct {
		a    Action
		want string
	}{
		{Steady{Reason: "3 voters healthy"}, "no change: 3 voters healthy"},
		{Hold{Reason: "learner cp-4 is catching up"}, "hold: learner cp-4 is catching up"},
		{AddLearner{Member: member(4), Reason: "2 voters"}, "add cp-4 (https://10.0.0.4:2380) as a learner: 2 voters"},
		{Promote{MemberID: 0x104, Name: "cp-4", Reason: "caught up"}, "promote learner cp-4 (104): caught up"},
		{Remove{MemberID: 0x103, Name: "cp-3", Reason: "dead"}, "remove member cp-3 (103): dead"},
		{Alert{Reason: "no quorum"}, "alert: no quorum"},
	} {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%T reads %q, want %q", tt.a, got, tt.want)
		}
	}
}
