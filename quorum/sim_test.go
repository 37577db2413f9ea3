package quorum

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// This file is a small deterministic simulator of a cluster's agents. It
// drives the package's pure functions the way the agent will: nodes with
// persisted state that crash and restart, messages delivered late, out of
// order or never, gossip views that lag and can be split, and a model of
// etcd that is just precise enough to tell which clusters reach quorum.

var simEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const simTick = 100 * time.Millisecond

// simTiming scales the protocol's durations down so that a run takes a
// couple of simulated minutes at most.
func simTiming() Timing {
	return Timing{
		Settle:      2 * time.Second,
		QuickSettle: 200 * time.Millisecond,
		PromiseTTL:  6 * time.Second,
		RetryBase:   300 * time.Millisecond,
		RetryMax:    3 * time.Second,
		DeadAfter:   40 * time.Second,
		ChangeGap:   time.Second,
	}
}

type simConfig struct {
	nodes, expect int
	maxStart      time.Duration // nodes start at random times within it
	maxLag        time.Duration // gossip lag, random per pair of nodes
	detect        time.Duration // gossip failure detection
	dropP         float64       // probability a message is lost
	maxDelay      time.Duration
	longP         float64 // probability a message is delayed up to longDelay
	longDelay     time.Duration
	crashes       int           // random crashes, each followed by a restart
	maxDown       time.Duration // longest a crashed node stays down
	split         bool          // hide random pairs of nodes from each other for a while
	metaLag       time.Duration // extra lag of gossip metadata, random per pair
	commitDropP   float64       // extra probability a commit message is lost
	anchors       int           // the first anchors nodes are at the join addresses
	horizon       time.Duration
	// hook, if set, may crash a seed at the points the quorum.md cases
	// name; it returns true if it crashed the node.
	hook func(s *sim, n *simNode, point string) bool
}

type simEvent struct {
	at time.Time
	up bool
}

type simMeta struct {
	cluster  uint64
	hasData  bool
	commitID string
}

type simMetaAt struct {
	at   time.Time
	meta simMeta
}

type simNode struct {
	idx      int
	self     Self
	events   []simEvent // up and down, in order; the first is the start
	up       bool
	st       State // persisted
	hasData  bool  // etcd data on disk
	cluster  uint64
	memberID uint64
	round    *Round
	retryAt  time.Time
	meta     []simMetaAt
	joined   time.Time // when it last started, as its gossip join
	lastJoin time.Time
	lastFwd  map[NodeID]time.Time
}

type simMember struct {
	id        uint64
	node      int
	name, url string
	learner   bool
	started   bool
	startedAt time.Time
	// lastActive is when the member last ran (the agent's view of etcd's
	// peer transport), for EtcdMember.InactiveSince.
	lastActive time.Time
}

type simCluster struct {
	id         uint64
	commit     string
	members    []*simMember
	nextID     uint64
	lastChange time.Time
	everQuorum bool
	changes    []time.Time
}

type simMsg struct {
	at       time.Time
	from, to int
	body     any
}

type sim struct {
	cfg      simConfig
	seed     uint64
	rng      *rand.Rand
	now      time.Time
	nodes    []*simNode
	lag      [][]time.Duration
	metaLag  [][]time.Duration
	hidden   [][]bool
	splitAt  [2]time.Time
	queue    []simMsg
	clusters map[uint64]*simCluster
	commits  map[string]Commit       // every commit ever created, by ID
	accepted map[string]map[int]bool // the nodes that ever accepted each commit
	asides   int
	victim   NodeID // the node a hook crashed, if any
	midRound int    // rounds given up because a commit reached the seed
	errs     []string
	trace    []string
}

func newSim(cfg simConfig, seed uint64) *sim {
	s := &sim{cfg: cfg, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5eed)), now: simEpoch,
		clusters: map[uint64]*simCluster{}, commits: map[string]Commit{}, accepted: map[string]map[int]bool{}}
	for i := range cfg.nodes {
		id := NodeID(fmt.Sprintf("%08x-%04x", s.rng.Uint32(), i))
		n := &simNode{idx: i, lastFwd: map[NodeID]time.Time{}, self: Self{
			Member:      Member{ID: id, Name: fmt.Sprintf("cp-%d", i+1), PeerURL: fmt.Sprintf("https://10.0.0.%d:2380", i+1)},
			ClusterName: "prod", Expect: cfg.expect,
		}}
		start := simEpoch.Add(time.Duration(s.rng.Int64N(int64(cfg.maxStart) + 1)))
		n.events = []simEvent{{start, true}}
		s.nodes = append(s.nodes, n)
	}
	s.lag = make([][]time.Duration, cfg.nodes)
	s.metaLag = make([][]time.Duration, cfg.nodes)
	s.hidden = make([][]bool, cfg.nodes)
	for i := range s.lag {
		s.lag[i] = make([]time.Duration, cfg.nodes)
		s.metaLag[i] = make([]time.Duration, cfg.nodes)
		s.hidden[i] = make([]bool, cfg.nodes)
		for j := range s.lag[i] {
			s.lag[i][j] = time.Duration(s.rng.Int64N(int64(cfg.maxLag) + 1))
			s.metaLag[i][j] = time.Duration(s.rng.Int64N(int64(cfg.metaLag) + 1))
			s.hidden[i][j] = i != j && s.rng.Float64() < 0.4
		}
	}
	if cfg.split {
		from := simEpoch.Add(time.Duration(s.rng.Int64N(int64(5 * time.Second))))
		s.splitAt = [2]time.Time{from, from.Add(time.Duration(5+s.rng.IntN(20)) * time.Second)}
	}
	for range cfg.crashes {
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		at := n.events[len(n.events)-1].at.Add(time.Duration(s.rng.Int64N(int64(15 * time.Second))))
		back := at.Add(time.Duration(s.rng.Int64N(int64(cfg.maxDown)) + int64(simTick)))
		n.events = append(n.events, simEvent{at, false}, simEvent{back, true})
	}
	return s
}

func (s *sim) tracef(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf("%7.1fs ", s.now.Sub(simEpoch).Seconds())+fmt.Sprintf(format, args...))
}

func (s *sim) failf(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf("t=%.1fs: ", s.now.Sub(simEpoch).Seconds())+fmt.Sprintf(format, args...))
}

// crash takes a node down now until back; it loses what it held in memory.
func (s *sim) crash(n *simNode, back time.Duration) {
	evs := []simEvent{{s.now, false}, {s.now.Add(back), true}}
	// Drop scheduled events that the crash overlaps.
	var keep []simEvent
	for _, e := range n.events {
		if !e.at.After(s.now) {
			keep = append(keep, e)
		}
	}
	n.events = append(keep, evs...)
	n.up, n.round = false, nil
	s.tracef("%s crashes (back in %v)", n.self.Name, back)
}

// clusterID derives a cluster's ID from its commit token, as etcd derives
// it from the member IDs, which derive from the token.
func clusterID(token string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(token))
	return h.Sum64() | 1
}

func (s *sim) send(from, to int, body any) {
	if s.rng.Float64() < s.cfg.dropP {
		return
	}
	if _, ok := body.(Commit); ok && s.rng.Float64() < s.cfg.commitDropP {
		return
	}
	d := time.Duration(s.rng.Int64N(int64(s.cfg.maxDelay) + 1))
	if s.rng.Float64() < s.cfg.longP {
		d = time.Duration(s.rng.Int64N(int64(s.cfg.longDelay) + 1))
	}
	s.queue = append(s.queue, simMsg{at: s.now.Add(d), from: from, to: to, body: body})
}

func (s *sim) byID(id NodeID) *simNode {
	for _, n := range s.nodes {
		if n.self.ID == id {
			return n
		}
	}
	return nil
}

func (s *sim) local(n *simNode, peers []Peer) LocalState {
	l := LocalState{Self: n.self, HasEtcdState: n.hasData, ClusterID: n.cluster, State: n.st}
	l.SeenClusterID, l.SeenCommitID = Seen(n.self, peers)
	return l
}

// anchors are the nodes at the join addresses as node i sees them: the
// first cfg.anchors nodes, complete when all of them are in its view.
func (s *sim) anchors(i int, peers []Peer) Anchors {
	a := Anchors{Complete: s.cfg.anchors > 0}
	for j := 0; j < s.cfg.anchors && j < len(s.nodes); j++ {
		id := s.nodes[j].self.ID
		if j != i && !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == id }) {
			a.Complete = false
			continue
		}
		a.IDs = append(a.IDs, id)
	}
	return a
}

// view is node i's gossip view now.
func (s *sim) view(i int) []Peer {
	var out []Peer
	for j, o := range s.nodes {
		if j == i {
			continue
		}
		tau := s.now.Add(-s.lag[i][j])
		k := sort.Search(len(o.events), func(k int) bool { return o.events[k].at.After(tau) }) - 1
		if k < 0 {
			continue
		}
		p := Peer{Member: o.self.Member, ControlPlane: true, ClusterName: o.self.ClusterName, Expect: o.self.Expect,
			Status: StatusAlive, Since: o.events[k].at.Add(s.lag[i][j])}
		if e := o.events[k]; !e.up {
			if tau.Sub(e.at) >= s.cfg.detect {
				p.Status, p.Since = StatusDead, e.at.Add(s.cfg.detect+s.lag[i][j])
			} else if k > 0 {
				p.Since = o.events[k-1].at.Add(s.lag[i][j])
			}
		}
		if s.cfg.split && s.hidden[i][j] && !s.now.Before(s.splitAt[0].Add(s.cfg.detect)) {
			if s.now.Before(s.splitAt[1]) {
				p.Status, p.Since = StatusDead, s.splitAt[0].Add(s.cfg.detect)
			} else if p.Since.Before(s.splitAt[1]) {
				p.Since = s.splitAt[1]
			}
		}
		mtau := tau.Add(-s.metaLag[i][j])
		m := sort.Search(len(o.meta), func(m int) bool { return o.meta[m].at.After(mtau) }) - 1
		if m >= 0 {
			p.ClusterID, p.HasEtcdState, p.CommitID = o.meta[m].meta.cluster, o.meta[m].meta.hasData, o.meta[m].meta.commitID
		}
		out = append(out, p)
	}
	return out
}

func (s *sim) publish(n *simNode) {
	m := simMeta{hasData: n.hasData}
	if cl := s.clusters[n.cluster]; n.hasData && cl != nil && s.hasQuorum(cl) {
		m.cluster = n.cluster
	}
	if n.st.Commit != nil {
		m.commitID = n.st.Commit.ID()
	}
	if len(n.meta) == 0 || n.meta[len(n.meta)-1].meta != m {
		n.meta = append(n.meta, simMetaAt{s.now, m})
	}
}

// run advances the simulation until the cluster has converged and stayed
// so for a few seconds, or until the horizon.
func (s *sim) run() {
	end := simEpoch.Add(s.cfg.horizon)
	var convergedAt time.Time
	for ; s.now.Before(end) && len(s.errs) == 0; s.now = s.now.Add(simTick) {
		for _, n := range s.nodes {
			k := sort.Search(len(n.events), func(k int) bool { return n.events[k].at.After(s.now) }) - 1
			up := k >= 0 && n.events[k].up
			if up != n.up {
				n.up, n.round, n.retryAt, n.joined = up, nil, time.Time{}, s.now
				if up {
					s.tracef("%s starts (data %v, commit %v)", n.self.Name, n.hasData, n.st.Commit != nil)
				}
			}
		}
		s.deliver()
		for _, i := range s.rng.Perm(len(s.nodes)) {
			if n := s.nodes[i]; n.up {
				s.step(n)
				s.publish(n)
			}
		}
		s.check()
		s.reconcile()
		s.check()
		if s.converged() == "" && s.quiet() {
			if convergedAt.IsZero() {
				convergedAt = s.now
			}
			if s.now.Sub(convergedAt) > 5*time.Second {
				return
			}
		} else {
			convergedAt = time.Time{}
		}
	}
}

// quiet reports whether no scripted crash, restart or split is still to come.
func (s *sim) quiet() bool {
	if s.cfg.split && s.now.Before(s.splitAt[1]) {
		return false
	}
	for _, n := range s.nodes {
		if last := n.events[len(n.events)-1]; last.at.After(s.now) || !last.up {
			return false
		}
	}
	return true
}

func (s *sim) deliver() {
	slices.SortStableFunc(s.queue, func(a, b simMsg) int { return a.at.Compare(b.at) })
	k := 0
	for k < len(s.queue) && !s.queue[k].at.After(s.now) {
		k++
	}
	due := slices.Clone(s.queue[:k])
	s.queue = slices.Delete(s.queue, 0, k)
	for _, m := range due {
		if n := s.nodes[m.to]; n.up {
			s.handle(n, m)
		}
	}
}
