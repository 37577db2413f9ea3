package nodestate

import (
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Store is the daemon's state: one copy, guarded by one lock, saved on
// every change. Components read snapshots and change it through Update;
// the formation protocol, whose every step reads and writes it together
// with its own fields, holds the lock itself (Lock, Locked, SaveLocked).
type Store struct {
	root *hostfs.Root
	now  func() time.Time

	mu sync.Mutex
	st *State
	// onPhase are called, outside the lock, after the phase changed.
	onPhase []func(Phase)
}

// Open loads the state (a fresh one with a new node ID if there is
// none) and saves it, so the node ID is on disk before anyone sees it.
func Open(root *hostfs.Root, now func() time.Time) (*Store, error) {
	st, err := LoadState(root)
	if err != nil {
		return nil, err
	}
	if err := st.Save(root); err != nil {
		return nil, err
	}
	return NewStore(root, st, now), nil
}

// NewStore wraps st without touching the disk until the first change.
func NewStore(root *hostfs.Root, st *State, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{root: root, now: now, st: st}
}

// Root is the host root the state is saved under.
func (s *Store) Root() *hostfs.Root { return s.root }

// OnPhase registers f to be called after every phase change.
func (s *Store) OnPhase(f func(Phase)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPhase = append(s.onPhase, f)
}

// Snapshot returns a copy of the state (the etcd decision deep-copied).
func (s *Store) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.st
	if s.st.Etcd != nil {
		e := *s.st.Etcd
		e.Peers = make(map[string]string, len(s.st.Etcd.Peers))
		for k, v := range s.st.Etcd.Peers {
			e.Peers[k] = v
		}
		c.Etcd = &e
	}
	return c
}

// Phase is the node's current phase.
func (s *Store) Phase() Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Phase
}

// Etcd is the decided etcd membership, nil until decided.
func (s *Store) Etcd() *EtcdDecision { return s.Snapshot().Etcd }

// Update changes the state under the lock and saves it. A change that
// returns an error is not saved: it must leave the state as it was.
func (s *Store) Update(change func(st *State) error) error {
	s.mu.Lock()
	before := s.st.Phase
	if err := change(s.st); err != nil {
		s.mu.Unlock()
		return err
	}
	err := s.st.Save(s.root)
	after := s.st.Phase
	hooks := s.onPhase
	s.mu.Unlock()
	if before != after {
		for _, f := range hooks {
			f(after)
		}
	}
	return err
}

// SetPhase records phase p (and when it was entered) and reports whether
// it changed.
func (s *Store) SetPhase(p Phase) (bool, error) {
	changed := false
	err := s.Update(func(st *State) error {
		changed = st.Phase != p
		st.SetPhase(p, s.now())
		return nil
	})
	return changed, err
}

// Lock takes the state's lock, for a caller that reads and writes the
// state together with its own fields (the formation protocol).
func (s *Store) Lock() { s.mu.Lock() }

// Unlock releases the lock Lock took.
func (s *Store) Unlock() { s.mu.Unlock() }

// Locked is the state itself; only with the lock held.
func (s *Store) Locked() *State { return s.st }

// SaveLocked saves the state; only with the lock held. A phase change
// made this way is not announced to OnPhase's functions: use SetPhase.
func (s *Store) SaveLocked() error { return s.st.Save(s.root) }
