// Package platform is the component that watches what runs of the seeded
// platform: every half minute a control-plane node reads the seeded
// Deployments, StatefulSets and DaemonSets from the API and publishes how
// many are available, the first few that are not with why, and, once some
// have not been for status.PlatformGrace, a degraded verdict. It reads
// only; `ecom-agent verify` checks the same and more on demand.
package platform

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/verify"
	"k8s.io/client-go/kubernetes"
)

// Name names the component.
const Name = "platform"

// Interval is how often the workloads are read.
const Interval = 30 * time.Second

// shown is how many workloads that are not available the status names.
const shown = 5

// Workloads is what a read of the seeded workloads finds: how many there
// are and, for each one that is not available, which and why.
type Workloads struct {
	Total    int
	NotReady []status.PlatformProblem
}

// Deps are what the component needs.
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Read reads the seeded workloads from the API.
	Read func(ctx context.Context) (Workloads, error)
	// Grace is how long workloads may be not available before the
	// verdict is degraded (default status.PlatformGrace).
	Grace time.Duration
	// NotSeeded are the platform's workloads the config leaves out, with
	// why; the status shows them.
	NotSeeded []status.PlatformProblem
}

// Platform is the component.
type Platform struct {
	d    Deps
	mu   sync.Mutex
	last *status.PlatformStatus
	read time.Time
}

// New returns the component.
func New(d Deps) *Platform {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Grace <= 0 {
		d.Grace = status.PlatformGrace
	}
	return &Platform{d: d}
}

// Name names the component.
func (p *Platform) Name() string { return Name }

// Step reads the workloads when Interval has passed since the last read.
func (p *Platform) Step(ctx context.Context) error {
	now := p.d.Now()
	p.mu.Lock()
	due := p.read.IsZero() || now.Sub(p.read) >= Interval
	prev := p.last
	p.mu.Unlock()
	if !due {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	w, err := p.d.Read(rctx)
	cancel()
	next := summarize(prev, w, err, now, p.d.Grace)
	next.NotSeeded = p.d.NotSeeded
	if next.Overdue && (prev == nil || !prev.Overdue) {
		p.d.Log.Warn("seeded workloads not available past the grace period", "not_ready", next.Workloads-next.Ready,
			"workloads", next.Workloads, "since", next.NotReadySince, "first", next.NotReady)
	}
	p.mu.Lock()
	p.last, p.read = next, now
	p.mu.Unlock()
	return nil
}

// summarize is the next status from the previous one and a read: the
// time workloads were first seen not available carries over while some
// still are, and so does the verdict across a failed read.
func summarize(prev *status.PlatformStatus, w Workloads, err error, now time.Time, grace time.Duration) *status.PlatformStatus {
	if err != nil {
		if prev == nil {
			return &status.PlatformStatus{Error: err.Error(), CheckedAt: now}
		}
		next := *prev
		next.Error, next.CheckedAt = err.Error(), now
		return &next
	}
	next := &status.PlatformStatus{Workloads: w.Total, Ready: w.Total - len(w.NotReady), CheckedAt: now}
	if len(w.NotReady) == 0 {
		return next
	}
	next.NotReady = w.NotReady[:min(len(w.NotReady), shown)]
	next.NotReadySince = now
	if prev != nil && !prev.NotReadySince.IsZero() {
		next.NotReadySince = prev.NotReadySince
	}
	next.Overdue = now.Sub(next.NotReadySince) >= grace
	return next
}

// Ready is always true: nothing waits for this component.
func (p *Platform) Ready() bool { return true }

// Pace steps the component often enough to keep to Interval.
func (p *Platform) Pace() time.Duration { return Interval / 3 }

// Stop has nothing to release.
func (p *Platform) Stop(context.Context) error { return nil }

// Report fills the status's platform section.
func (p *Platform) Report(s *status.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil {
		c := *p.last
		s.Platform = &c
	}
}

// FromAPI reads the workloads with the agent's kubeconfig on root, as
// `ecom-agent verify` does.
func FromAPI(root *hostfs.Root) func(ctx context.Context) (Workloads, error) {
	return func(ctx context.Context) (Workloads, error) {
		cfg, err := kubeclient.RESTConfig(root, bootstrap.AgentKubeconfig)
		if err != nil {
			return Workloads{}, err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return Workloads{}, err
		}
		total, bad, err := verify.Workloads(ctx, cs)
		if err != nil {
			return Workloads{}, err
		}
		w := Workloads{Total: total}
		for _, b := range bad {
			w.NotReady = append(w.NotReady, status.PlatformProblem{Object: b.Object, Reason: b.Reason})
		}
		return w, nil
	}
}
