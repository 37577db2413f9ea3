package component

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Entry is a component in a Runner's list, with the component that must
// be Ready before it is stepped (nil: none).
type Entry struct {
	Component Component
	Needs     Component
}

// Runner steps a node's components, each in a loop of its own, in the
// order of its list: a component is stepped only while what it Needs is
// Ready (and what that needs, and so on). When that stops being so after
// the component started, a Withdrawer is withdrawn. Run stops them all,
// in reverse order, when its context ends.
type Runner struct {
	entries []Entry
	log     *slog.Logger
	wake    map[Component]chan struct{}

	mu    sync.Mutex
	ready map[Component]bool
	// errs remembers each component's last error, logged once.
	errs map[Component]string
}

// NewRunner returns a runner of entries, in start order. Every Needs
// must come earlier in the list.
func NewRunner(log *slog.Logger, entries ...Entry) *Runner {
	r := &Runner{entries: entries, log: log, wake: map[Component]chan struct{}{},
		ready: map[Component]bool{}, errs: map[Component]string{}}
	for i, e := range entries {
		r.wake[e.Component] = make(chan struct{}, 1)
		if e.Needs != nil && !slices.ContainsFunc(entries[:i], func(p Entry) bool { return p.Component == e.Needs }) {
			panic("component " + e.Component.Name() + " needs " + e.Needs.Name() + ", which is not before it")
		}
	}
	return r
}

// Components lists the components in start order.
func (r *Runner) Components() []Component {
	out := make([]Component, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.Component
	}
	return out
}

// Wake has c take its next step now rather than after its pace.
func (r *Runner) Wake(c Component) {
	select {
	case r.wake[c] <- struct{}{}:
	default:
	}
}

// Run steps every component until ctx ends, then stops them in reverse
// order and waits for every loop.
func (r *Runner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, e := range r.entries {
		g.Go(func() error {
			r.loop(gctx, e)
			return nil
		})
	}
	err := g.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, e := range slices.Backward(r.entries) {
		if serr := e.Component.Stop(sctx); serr != nil {
			r.log.Warn("stop", "component", e.Component.Name(), "err", serr)
		}
	}
	return err
}

// open reports whether c may be stepped: everything it needs, directly
// or not, is Ready.
func (r *Runner) open(c Component) bool {
	for _, e := range r.entries {
		if e.Component == c {
			return e.Needs == nil || (e.Needs.Ready() && r.open(e.Needs))
		}
	}
	return false
}

func (r *Runner) loop(ctx context.Context, e Entry) {
	c := e.Component
	started := false
	for {
		if r.open(c) {
			started = true
			r.step(ctx, c)
		} else if started {
			started = false
			if w, ok := c.(Withdrawer); ok {
				r.log.Info("withdrawing: what it needs is no longer ready", "component", c.Name(), "needs", e.Needs.Name())
				w.Withdraw(ctx)
			}
			r.setReady(c, false)
		}
		pace := DefaultPace
		if p, ok := c.(Paced); ok {
			pace = p.Pace()
		}
		var wakeups <-chan struct{} // nil: never
		if w, ok := c.(Waker); ok {
			wakeups = w.Wakeups()
		}
		t := time.NewTimer(pace)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake[c]:
			t.Stop()
		case <-wakeups:
			t.Stop()
		case <-t.C:
		}
	}
}

// step takes one step of c, logs a new error once, and wakes the
// components after c when it became Ready.
func (r *Runner) step(ctx context.Context, c Component) {
	err := c.Step(ctx)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	r.mu.Lock()
	changed := r.errs[c] != msg
	r.errs[c] = msg
	r.mu.Unlock()
	if changed && err != nil && ctx.Err() == nil {
		r.log.Warn("step failed; retrying", "component", c.Name(), "err", err)
	}
	if r.setReady(c, c.Ready()) {
		for _, e := range r.entries {
			if e.Component != c {
				r.Wake(e.Component)
			}
		}
	}
}

// setReady records c's readiness and reports whether it just became
// ready.
func (r *Runner) setReady(c Component, ready bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	became := ready && !r.ready[c]
	r.ready[c] = ready
	return became
}

// Err is the last error of c's step ("" if it succeeded).
func (r *Runner) Err(c Component) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[c]
}
