package gossip

import (
	"net/netip"
	"time"
)

// View is the membership the rest of the agent decides on. *Gossip is the
// real one; tests wrap it (or replace it) to inject split views and
// crashes without touching the code that consumes it.
type View interface {
	// Members returns every node the view knows, this one included, in
	// name order. Dead and left nodes stay listed.
	Members() []Member
	// Subscribe returns a channel that receives a value after the view
	// changes, and a function that ends the subscription. Changes are
	// coalesced: a receiver reads Members after each value, not a log of
	// events. The channel is never closed.
	Subscribe() (changed <-chan struct{}, cancel func())
}

var _ View = (*Gossip)(nil)

// Member is a node as this node sees it.
type Member struct {
	// Name is the memberlist node name.
	Name string
	// Addr is the node's gossip address.
	Addr netip.AddrPort
	// State is alive, suspect, dead or left.
	State State
	// Since is when this node saw the member enter State.
	Since time.Time
	// Meta is the member's decoded metadata.
	Meta Meta
	// MetaErr is why Meta could not be decoded. Such a member is listed
	// (so operators see it) but must be ignored for decisions.
	MetaErr error
}

// State is a member's liveness as this node sees it.
type State uint8

// The states of a member. memberlist v0.7.0 tells its delegates about
// joins, updates and deaths but not about suspicion, so a member is
// StateSuspect here once this node's own probe of it failed (memberlist
// raises suspicion then). Suspicion other nodes raised shows only when
// this node's next probe fails too; if the member is declared dead first,
// it goes from alive straight to dead. Suspicion ends with a successful
// probe, an update from the member, or its death.
const (
	StateAlive State = iota + 1
	StateSuspect
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return "unknown"
	}
}
