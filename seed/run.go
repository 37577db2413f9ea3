package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// maxRetryBackoff bounds the wait between retries of a pass that left
// skipped or failed objects while the manifests did not change.
const maxRetryBackoff = 10 * time.Minute

// Defaults of Options.
const (
	DefaultRescan        = 30 * time.Second
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Options configure Run.
type Options struct {
	// Config is the agent's identity (cluster-admin).
	Config *rest.Config
	// Root is the host root Dir is read through; nil reads no directory.
	Root *hostfs.Root
	// Dir is the logical directory of overrides (default ManifestsDir).
	Dir string
	// Embedded holds the manifests at its root (default Embedded()).
	Embedded fs.FS
	// Vars are substituted in the manifests.
	Vars Vars
	// Identity is this node's name: the Lease holder identity. Required.
	Identity string
	// Log receives the seeder's log (nil discards).
	Log *slog.Logger
	// Rescan is how often the seeder rereads the manifests, and retries
	// what failed (default DefaultRescan).
	Rescan time.Duration
	// OnReport, when set, is called after every apply pass on the leader.
	OnReport func(Report)
	// OnLeading, when set, is called with true when this node becomes the
	// seeder, before its first write, and with false once it has stopped
	// writing, before it releases the Lease.
	OnLeading func(leading bool)

	// Lease timings (defaults DefaultLeaseDuration, DefaultRenewDeadline,
	// DefaultRetryPeriod); the lease duration is whole seconds.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// CRDTimeout bounds the wait for CRDs to be Established
	// (DefaultCRDTimeout).
	CRDTimeout time.Duration
}

// Run campaigns for the Lease kube-system/ecom-agent-seeder and, while this
// node holds it, applies the manifests at once, then again whenever the
// effective set changes (its hash, checked every Rescan) or when the last
// pass left failed or skipped objects. Losing the Lease stops a pass in
// progress before anyone else can take it: every write checks that the
// Lease was renewed within the renew deadline, and releasing the Lease
// waits for the pass to stop. After a lost Lease Run campaigns again. It
// returns nil when ctx ends (after releasing the Lease), or an error for
// invalid options.
func Run(ctx context.Context, o Options) error {
	if o.Config == nil {
		return errors.New("seed: Options.Config is required")
	}
	if o.Identity == "" {
		return errors.New("seed: Options.Identity is required")
	}
	if o.Embedded == nil {
		o.Embedded = Embedded()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.Log = o.Log.With("seeder", o.Identity)
	if o.Rescan <= 0 {
		o.Rescan = DefaultRescan
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	g := &gate{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: LeaseNamespace, Name: LeaseName},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
		},
		identity:      o.Identity,
		renewDeadline: o.RenewDeadline,
	}
	r := &runner{o: o, cs: cs, gate: g}
	for {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            g,
			Name:            LeaseName,
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) { g.work(lctx, r.lead) },
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != o.Identity {
						o.Log.Info("seeder elected", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("seed: leader election: %w", err)
		}
		le.Run(ctx)
		g.stopWorker(context.Background())
		if ctx.Err() != nil {
			return nil
		}
		o.Log.Warn("lost the seeder lease; campaigning again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.RetryPeriod):
		}
	}
}

// gate wraps the Lease lock: it remembers when this node last acquired or
// renewed the Lease, so that a pass can refuse to write on a stale lease,
// and it stops the pass before the Lease is released.
type gate struct {
	resourcelock.Interface
	identity      string
	renewDeadline time.Duration

	mu      sync.Mutex
	renewed time.Time // the RenewTime of our last successful acquire or renew
	cancel  context.CancelFunc
	done    chan struct{}
}

// Get reads the Lease; a holder other than this node means the lease is
// lost, and no write may follow even before the elector notices.
func (g *gate) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := g.Interface.Get(ctx)
	if err == nil && rec.HolderIdentity != g.identity {
		g.mu.Lock()
		g.renewed = time.Time{}
		g.mu.Unlock()
	}
	return rec, raw, err
}

func (g *gate) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	err := g.Interface.Create(ctx, rec)
	g.record(rec, err)
	return err
}

func (g *gate) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	if rec.HolderIdentity != g.identity {
		// A release: no write of ours may follow it.
		g.mu.Lock()
		g.renewed = time.Time{}
		g.mu.Unlock()
		g.stopWorker(ctx)
	}
	err := g.Interface.Update(ctx, rec)
	g.record(rec, err)
	return err
}

func (g *gate) record(rec resourcelock.LeaderElectionRecord, err error) {
	if err != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if rec.HolderIdentity == g.identity {
		g.renewed = rec.RenewTime.Time
	} else {
		g.renewed = time.Time{}
	}
}

// check is the pass's guard: the Lease must have been renewed by this node
// within the renew deadline (others take it over only a lease duration
// after the last renewal they saw, which is longer).
func (g *gate) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.renewed.IsZero() || time.Since(g.renewed) >= g.renewDeadline {
		return errors.New("the seeder lease is not held")
	}
	return nil
}

// work runs f while leading, so that stopWorker can cancel and await it.
func (g *gate) work(ctx context.Context, f func(context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	g.mu.Lock()
	g.cancel, g.done = cancel, done
	g.mu.Unlock()
	defer close(done)
	defer cancel()
	if ctx.Err() != nil || g.check() != nil {
		return
	}
	f(ctx)
}

// stopWorker cancels the running pass, if any, and waits for it to end
// (or for ctx).
func (g *gate) stopWorker(ctx context.Context) {
	g.mu.Lock()
	cancel, done := g.cancel, g.done
	g.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

type runner struct {
	o    Options
	cs   kubernetes.Interface
	gate *gate
}

// lead is the seeder's loop while it holds the Lease.
func (r *runner) lead(ctx context.Context) {
	log := r.o.Log
	if r.o.OnLeading != nil {
		r.o.OnLeading(true)
		defer r.o.OnLeading(false)
	}
	log.Info("this node is the seeder")
	defer log.Info("this node stopped seeding")
	var prev, last *Report
	havePrev := false
	failed := false  // the last pass ended in an error
	unsaved := false // the last report could not be saved
	// A pass that left skipped or failed objects is retried with a
	// backoff, from one rescan up to maxRetryBackoff, while the set stays
	// the same: a CRD that never comes must not cost a full pass every
	// rescan forever.
	var retryAt time.Time
	backoff := r.o.Rescan
	for {
		if !havePrev {
			p, err := LoadReport(ctx, r.cs)
			if err != nil {
				log.Warn("cannot read the last seed report, retrying", "err", err)
			} else {
				prev, havePrev = p, true
			}
		}
		if unsaved && r.gate.check() == nil {
			if err := SaveReport(ctx, r.cs, *last); err != nil {
				log.Warn("cannot save the seed report", "err", err)
			} else {
				unsaved = false
			}
		}
		if havePrev {
			set, problems := Load(r.o.Root, r.o.Dir, r.o.Embedded, r.o.Vars)
			changed := last == nil || set.Hash != last.Hash
			if changed {
				backoff = r.o.Rescan
			}
			if changed || failed || (last.NeedsRetry() && !time.Now().Before(retryAt)) {
				for _, p := range problems {
					log.Warn("manifest problem", "problem", p.String())
				}
				rep, err := Apply(ctx, r.o.Config, set, prev, ApplyOptions{
					Seeder: r.o.Identity, Log: log, CRDTimeout: r.o.CRDTimeout, Guard: r.gate.check,
				})
				var stopped errStopped
				switch {
				case errors.As(err, &stopped):
					if ctx.Err() != nil {
						return
					}
					// The guard: the lease is in doubt. Either the
					// elector renews it and the next rescan retries,
					// or it gives up and ctx ends.
					log.Warn("seeding pass stopped", "err", err)
					failed = true
				case err != nil:
					log.Warn("seeding pass failed, retrying", "err", err)
					failed = true
				default:
					failed = false
					if err := r.gate.check(); err != nil {
						failed = true
						break
					}
					unsaved = false
					if err := SaveReport(ctx, r.cs, rep); err != nil {
						log.Warn("cannot save the seed report, retrying", "err", err)
						unsaved = true
					}
					if !changed && rep.NeedsRetry() {
						backoff = min(2*backoff, maxRetryBackoff)
					}
					retryAt = time.Now().Add(backoff)
					prev, last = &rep, &rep
					if r.o.OnReport != nil {
						r.o.OnReport(rep)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.o.Rescan):
		}
	}
}
