// Package component is the daemon's lifecycle: the parts of the agent
// (membership, the etcd member, the control plane, the node side, ...)
// as components that a Runner steps in order, each in its own loop.
//
// It follows k0s's Component (fallible preparation, ordered start,
// reverse stop) but never blocks on a start: etcd may wait hours for its
// peers, and the agent must answer status and its peers meanwhile. A
// component takes one idempotent Step at a time, says whether the
// components that need it may start (Ready), and releases what it holds
// in this process on Stop. The units a component starts are systemd's:
// they run on when the agent stops.
package component

import (
	"context"
	"time"

	"github.com/ecom-platform/ecom-agent/status"
)

// Component is one part of the daemon.
type Component interface {
	// Name names the component in logs and status conditions.
	Name() string
	// Step takes the next step toward the component's goal and returns.
	// It is idempotent: a step that failed is taken again later.
	Step(ctx context.Context) error
	// Ready reports whether the components that need this one may
	// start. It holds once reached until the component is withdrawn:
	// a passing failure is a condition, not a reason to stop the rest.
	Ready() bool
	// Stop releases what the component holds in this process
	// (goroutines, listeners, leases). It may be called more than once.
	Stop(ctx context.Context) error
}

// Reporter is a component that fills its part of the status document.
type Reporter interface {
	Report(s *status.Status)
}

// Paced is a component that says how soon it wants its next step; the
// others are stepped every DefaultPace.
type Paced interface {
	Pace() time.Duration
}

// Withdrawer is a component that undoes its start when what it needs is
// no longer ready (the node's etcd data was set aside): it stops what it
// started, so the node can start over.
type Withdrawer interface {
	Withdraw(ctx context.Context)
}

// Waker is a component that asks for a step before its pace is up
// (gossip saw a change, a peer sent a commit).
type Waker interface {
	Wakeups() <-chan struct{}
}

// DefaultPace is how often a component that is not Paced is stepped.
const DefaultPace = 2 * time.Second

// StartingPace is the pace of a component on its way to Ready: what
// comes after it waits for it.
const StartingPace = 500 * time.Millisecond

// PaceUntilReady is StartingPace until ready, DefaultPace after.
func PaceUntilReady(ready bool) time.Duration {
	if ready {
		return DefaultPace
	}
	return StartingPace
}
