package membership

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
)

// Setting etcd data aside on an orphaned commit, confirmed by the members
// themselves: the gossip view that suggested it is made of claims anyone
// holding the cluster secret can make.

// methodState asks a control-plane node what it holds: its commit and its
// etcd cluster. A control-plane method, so a worker or an impostor under a
// member's node ID cannot answer it.
const methodState = "quorum.state"

// handleState answers methodState.
func (m *Membership) handleState(_ context.Context, _ peer.Request) (any, error) {
	if !m.cfg.IsControlPlane() {
		return nil, peer.Errorf(peer.CodeRefused, "%s is a worker", m.cfg.NodeName)
	}
	peers := m.peersNow()
	m.store.Lock()
	defer m.store.Unlock()
	local := m.localLocked(peers)
	var st quorum.MemberState
	if local.HasEtcdState {
		st.ClusterID = local.ClusterID
	}
	if c := local.State.Commit; c != nil {
		st.CommitID = c.ID()
	}
	return st, nil
}

// confirmAside asks every member the set-aside names, at once and
// without the store's lock (their handlers may be asking us), whether it
// moved on; it reports whether enough of them said so.
func (m *Membership) confirmAside(ctx context.Context, aside quorum.SetAside) bool {
	var mu sync.Mutex
	answers := map[quorum.NodeID]quorum.MemberState{}
	var wg sync.WaitGroup
	for _, mb := range aside.Confirm {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var st quorum.MemberState
			if err := m.call(cctx, mb.ID, methodState, struct{}{}, &st); err != nil {
				m.log.Warn("quorum: a member gossip says moved on did not confirm it", "member", mb.Name, "err", err)
				return
			}
			mu.Lock()
			answers[mb.ID] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	ok, not := aside.Confirmed(answers)
	if !ok {
		msg := fmt.Sprintf("gossip says commit %s is orphaned, but %s did not confirm it themselves; keeping this node's etcd data",
			aside.Commit, strings.Join(not, ", "))
		m.log.Warn("quorum: set-aside not confirmed", "reason", msg)
		m.cond.Set(status.ReasonJoining, msg)
	}
	return ok
}

// confirmWithoutData asks the host gossip shows under a member's name,
// over the control-plane channel, whether it holds no etcd data (a
// reinstalled host), before its stale member is removed; it says why not
// otherwise.
func (m *Membership) confirmWithoutData(ctx context.Context, host quorum.Member) (string, bool) {
	var st quorum.MemberState
	if err := m.call(ctx, host.ID, methodState, struct{}{}, &st); err != nil {
		return fmt.Sprintf("the host under its name without etcd data (node %s) did not confirm it over the control-plane channel "+
			"(an impostor, or a node without the control-plane key): %v", host.ID, err), false
	}
	if st.ClusterID != 0 || st.CommitID != "" {
		return fmt.Sprintf("the host under its name (node %s) says it holds etcd data of cluster %x (commit %q)", host.ID, st.ClusterID, st.CommitID), false
	}
	return "", true
}
