// Package gossip is ecom-agent's membership layer: nodes of a cluster
// find each other and share small facts about themselves (role, etcd
// cluster ID, bootstrap phase, ...) over hashicorp/memberlist.
//
// Gossip is encrypted with AES-256-GCM under a key derived from the
// cluster secret and labelled with the cluster name, so nodes with another
// secret or of another cluster cannot join; both sides log why. The rest
// of the agent reads the membership through View, which tests wrap to
// inject split views.
//
// A node's lifecycle: New listens, Run joins the configured peers and
// keeps the node joined, SetLocalMeta publishes changes, and Leave (or
// Shutdown, for a hard stop) ends it.
package gossip

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip is this node's membership in the cluster. Its methods are safe
// for concurrent use.
type Gossip struct {
	cfg   Config
	t     timing
	log   *slog.Logger
	ml    *memberlist.Memberlist
	table *table
	addr  netip.AddrPort

	// metaMu serializes metadata updates so counters go out in order.
	metaMu sync.Mutex
	meta   Meta
	// encoded is meta as memberlist's NodeMeta hands it out; it is read
	// with memberlist's locks held, so it is not guarded by metaMu.
	encoded atomic.Pointer[[]byte]

	// stopMu guards stopped, and keeps Leave and Shutdown apart.
	stopMu  sync.Mutex
	stopped bool
	done    chan struct{}

	// joinMu guards joinErr, the last failed join while alone, and
	// joinTargets, Config.Join as Run last resolved it.
	joinMu      sync.Mutex
	joinErr     error
	joinTargets *joinTargets

	// publish wakes the publisher: the metadata changed.
	publish chan struct{}
}

// New starts gossip: it listens on the configured address and port, but
// contacts nobody until Join or Run.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		cfg:     cfg,
		t:       cfg.timing(),
		log:     logger,
		done:    make(chan struct{}),
		publish: make(chan struct{}, 1),
	}
	g.cfg.Join = append([]string(nil), cfg.Join...)
	g.meta = cfg.Meta
	g.meta.NodeName, g.meta.ClusterName, g.meta.Counter = cfg.NodeName, cfg.ClusterName, 1
	b, err := encodeMeta(g.meta)
	if err != nil {
		return nil, fmt.Errorf("gossip metadata: %w", err)
	}
	g.encoded.Store(&b)

	key := []byte(cfg.Key)
	g.table = newTable(cfg.NodeName, g.t.deadNodeReclaim, logger)
	bridge := &logBridge{log: logger.With("component", "memberlist"), onSuspect: g.table.suspect}
	tr, err := newTransport(netip.AddrPortFrom(cfg.bindAddr(), uint16(cfg.Port)), logger.With("component", "memberlist"))
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	mc, err := g.cfg.memberlistConfig(g.t, key, log.New(bridge, "", 0), metaDelegate{g}, g.table, tr)
	if err != nil {
		_ = tr.Shutdown()
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", netip.AddrPortFrom(cfg.AdvertiseAddr, uint16(tr.port)), err)
	}
	g.ml = ml
	g.addr = nodeAddr(ml.LocalNode())
	go g.publisher()
	logger.Info("gossip listening", "addr", g.addr, "cluster", cfg.ClusterName)
	return g, nil
}

// publisher broadcasts this node's metadata each time it changes, one
// broadcast at a time: memberlist's UpdateNode returns only once its
// broadcast was sent as often as its retransmit limit asks (a few gossip
// rounds) or the timeout passed, and the agent changes its metadata on
// its critical path (every bootstrap phase), which must not wait for
// that. Changes made during a broadcast go out together in the next:
// UpdateNode reads the current metadata when it is called.
func (g *Gossip) publisher() {
	for {
		select {
		case <-g.done:
			return
		case <-g.publish:
		}
		if g.isStopped() {
			return
		}
		if err := g.ml.UpdateNode(g.t.broadcastTimeout); err != nil && !g.isStopped() {
			// Not an error for anyone: the update is ours already
			// and spreads with the next push/pull.
			g.log.Warn("metadata update not confirmed by any peer yet", "counter", g.LocalMeta().Counter, "err", err)
		}
	}
}

// Addr returns the gossip address this node advertises, with the port the
// system picked if Config.Port was 0.
func (g *Gossip) Addr() netip.AddrPort { return g.addr }

// Members returns every node this one knows, itself included, in name
// order.
func (g *Gossip) Members() []Member { return g.table.snapshot() }

// Subscribe returns a channel that receives a value after the membership
// changes, and a function that ends the subscription. See View.
func (g *Gossip) Subscribe() (<-chan struct{}, func()) { return g.table.subscribe() }

// LocalMeta returns this node's current metadata.
func (g *Gossip) LocalMeta() Meta {
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	return g.meta
}

// SetLocalMeta changes this node's metadata with update and pushes it to
// the other nodes. update gets a copy; NodeName, ClusterName and Counter
// are managed here and changes to them are ignored. If the result does
// not encode (too long, bad characters) nothing changes and the error
// says why. It does not wait for the broadcast, which goes out in the
// background; nodes that missed it get the change at the next state
// exchange.
func (g *Gossip) SetLocalMeta(update func(*Meta)) error {
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	return g.setMetaLocked(update)
}

func (g *Gossip) setMetaLocked(update func(*Meta)) error {
	m := g.meta
	update(&m)
	m.NodeName, m.ClusterName, m.Counter = g.cfg.NodeName, g.cfg.ClusterName, g.meta.Counter+1
	b, err := encodeMeta(m)
	if err != nil {
		return fmt.Errorf("update gossip metadata: %w", err)
	}
	if g.isStopped() {
		return errors.New("update gossip metadata: gossip is shut down")
	}
	g.meta = m
	g.encoded.Store(&b)
	select {
	case g.publish <- struct{}{}:
	default: // a broadcast is pending already; it will carry this
	}
	return nil
}

// Leave announces that this node leaves, so the others list it as left
// rather than dead, and then shuts gossip down. timeout bounds each of
// the two broadcasts. It does nothing after Shutdown or a previous Leave.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	// Holding stopMu keeps Shutdown out: memberlist panics on a Leave
	// after its Shutdown.
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	if g.stopped {
		return nil
	}

	var errs []error
	g.meta.Leaving = true
	g.meta.Counter++
	if b, err := encodeMeta(g.meta); err != nil {
		errs = append(errs, fmt.Errorf("announce leave: %w", err))
	} else {
		g.encoded.Store(&b)
		if err := g.ml.UpdateNode(timeout); err != nil {
			errs = append(errs, fmt.Errorf("announce leave: %w", err))
		}
	}
	if err := g.ml.Leave(timeout); err != nil {
		errs = append(errs, fmt.Errorf("leave: %w", err))
	}
	g.log.Info("left the cluster")
	if err := g.shutdownLocked(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Shutdown stops gossip at once, without telling anyone: the others
// detect this node's failure by probing. Run returns. It is safe to call
// more than once.
func (g *Gossip) Shutdown() error {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	return g.shutdownLocked()
}

func (g *Gossip) shutdownLocked() error {
	if g.stopped {
		return nil
	}
	g.stopped = true
	close(g.done)
	if err := g.ml.Shutdown(); err != nil {
		return fmt.Errorf("shut down gossip: %w", err)
	}
	return nil
}

func (g *Gossip) isStopped() bool {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	return g.stopped
}

// metaDelegate hands memberlist our encoded metadata. The other Delegate
// methods are for user messages and state, which we do not use.
type metaDelegate struct{ g *Gossip }

func (d metaDelegate) NodeMeta(limit int) []byte {
	b := *d.g.encoded.Load()
	if len(b) > limit {
		// encodeMeta keeps it within memberlist.MetaMaxSize, the only
		// limit memberlist asks for.
		return nil
	}
	return b
}

func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}
