package gossip

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// table is the membership as memberlist's delegates report it. memberlist
// calls the delegates with its node lock held, so they only update the
// table and signal subscribers; they never block or call memberlist.
type table struct {
	local   string
	reclaim time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	members map[string]*Member
	subs    map[chan struct{}]struct{}
}

func newTable(local string, reclaim time.Duration, log *slog.Logger) *table {
	return &table{
		local:   local,
		reclaim: reclaim,
		log:     log,
		now:     time.Now,
		members: make(map[string]*Member),
		subs:    make(map[chan struct{}]struct{}),
	}
}

// NotifyJoin records a node that joined, came back, or took over a dead
// node's name from a new address.
func (t *table) NotifyJoin(n *memberlist.Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var old Member // a copy: set updates the record in place
	p, known := t.members[n.Name]
	if known {
		old = *p
	}
	m := t.set(n, StateAlive)
	switch {
	case m.MetaErr != nil:
		t.log.Warn("member joined with metadata we cannot read; ignoring it for decisions",
			"member", m.Name, "addr", m.Addr, "err", m.MetaErr)
	case known && (old.Addr != m.Addr || old.Meta.NodeID != m.Meta.NodeID):
		// A reinstalled host, or one that came back with a new address.
		t.log.Info("member rejoined as a new node", "member", m.Name, "addr", m.Addr,
			"old_addr", old.Addr, "node_id", m.Meta.NodeID, "old_node_id", old.Meta.NodeID)
	default:
		t.log.Info("member joined", "member", m.Name, "addr", m.Addr, "node_id", m.Meta.NodeID,
			"role", m.Meta.Role, "phase", m.Meta.Phase)
	}
	t.notify()
}

// NotifyUpdate records a node's new metadata.
func (t *table) NotifyUpdate(n *memberlist.Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.set(n, StateAlive)
	if m.MetaErr != nil {
		t.log.Warn("member sent metadata we cannot read; ignoring it for decisions",
			"member", m.Name, "addr", m.Addr, "err", m.MetaErr)
	} else {
		t.log.Debug("member updated", "member", m.Name, "counter", m.Meta.Counter, "phase", m.Meta.Phase,
			"etcd_cluster_id", m.Meta.EtcdClusterID)
	}
	t.notify()
}

// NotifyLeave records a node that left or was declared dead. memberlist
// does not say which; a node that leaves gracefully announces it in its
// metadata first (see Gossip.Leave).
func (t *table) NotifyLeave(n *memberlist.Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	state := StateDead
	if meta, err := decodeMeta(n.Name, n.Meta); err == nil && meta.Leaving {
		state = StateLeft
	}
	m := t.set(n, state)
	if state == StateLeft {
		t.log.Info("member left", "member", m.Name, "addr", m.Addr)
	} else {
		t.log.Warn("member failed", "member", m.Name, "addr", m.Addr)
	}
	t.notify()
}

// NotifyConflict logs a node claiming a known member's name from another
// address. memberlist refuses the claim unless the member left or has
// been dead for DeadNodeReclaimTime.
func (t *table) NotifyConflict(existing, other *memberlist.Node) {
	hint := "two nodes have the same node_name, or a host came back with a new address; " +
		"the new address can take the name once the old one has been dead for " + t.reclaim.String()
	if existing.Name == t.local {
		t.log.Error("another address claims our node name", "name", existing.Name,
			"our_addr", nodeAddr(existing), "other_addr", nodeAddr(other), "hint", hint)
		return
	}
	t.log.Error("node name conflict: refusing another address's claim to a member's name", "member", existing.Name,
		"addr", nodeAddr(existing), "claimed_from", nodeAddr(other), "hint", hint)
}

// AckPayload adds nothing to our probe acks.
func (t *table) AckPayload() []byte { return nil }

// NotifyPingComplete ends suspicion of a node that answered our probe.
func (t *table) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.members[other.Name]; ok && m.State == StateSuspect {
		m.State, m.Since = StateAlive, t.now()
		t.log.Info("member answers probes again", "member", m.Name)
		t.notify()
	}
}

// suspect marks a node whose probe by this node failed.
func (t *table) suspect(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.members[name]; ok && m.State == StateAlive && name != t.local {
		m.State, m.Since = StateSuspect, t.now()
		t.log.Warn("member suspect: it did not answer our probe", "member", name, "addr", m.Addr)
		t.notify()
	}
}

// set records n in state and returns the record. t.mu is held.
func (t *table) set(n *memberlist.Node, state State) *Member {
	m, ok := t.members[n.Name]
	if !ok {
		m = &Member{Name: n.Name}
		t.members[n.Name] = m
	}
	if m.State != state {
		m.State, m.Since = state, t.now()
	}
	m.Addr = nodeAddr(n)
	meta, err := decodeMeta(n.Name, n.Meta)
	m.Meta, m.MetaErr = meta, err
	return m
}

// notify signals every subscriber without blocking. t.mu is held.
func (t *table) notify() {
	for ch := range t.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is pending already
		}
	}
}

func (t *table) snapshot() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (t *table) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.subs, ch)
			t.mu.Unlock()
		})
	}
}

// nodeAddr is n's gossip address.
func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}
