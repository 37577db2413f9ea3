// Package render is the component that writes the node's files: the PKI,
// kubeconfigs and component configs the renderer builds for this node's
// config and, on a control-plane node, its decided etcd membership.
package render

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
)

// Name is the component's name.
const Name = "render"

// Files renders the node's files once per start (and again after the
// node starts over). Nothing is rendered on a control-plane node until
// its etcd membership is decided: the cluster's CAs come from the node
// that founds it, so a node that created its own first could end up
// with a CA nobody else trusts. A worker renders what needs no CA key
// (containerd's, the kubelet's and kube-proxy's configs); its
// credentials come from a control-plane agent.
type Files struct {
	cfg   *config.Config
	root  *hostfs.Root
	log   *slog.Logger
	store *nodestate.Store

	mu       sync.Mutex
	rendered bool
	written  []bootstrap.Written
}

var (
	_ component.Component  = (*Files)(nil)
	_ component.Withdrawer = (*Files)(nil)
)

// New returns the component.
func New(cfg *config.Config, root *hostfs.Root, log *slog.Logger, store *nodestate.Store) *Files {
	return &Files{cfg: cfg, root: root, log: log, store: store}
}

// Name names the component.
func (f *Files) Name() string { return Name }

// Step renders, unless it has.
func (f *Files) Step(ctx context.Context) error {
	if f.Ready() {
		return nil
	}
	r := bootstrap.NewRenderer(f.cfg, f.root, f.log)
	r.SkipUnitFiles = true
	phase := nodestate.PhaseWorkerWaiting
	if f.cfg.IsControlPlane() {
		r.Membership = f.store.Etcd().Membership()
		phase = nodestate.PhaseRendered
	}
	written, err := r.Run(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.rendered, f.written = true, written
	f.mu.Unlock()
	_, err = f.store.SetPhase(phase)
	return err
}

// Ready reports whether the files are written.
func (f *Files) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rendered
}

// Written is what the render wrote: the units whose inputs changed
// restart when they are next brought up.
func (f *Files) Written() []bootstrap.Written {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.written)
}

// Withdraw forgets the render: the node's membership was set aside, and
// the next one renders again.
func (f *Files) Withdraw(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rendered, f.written = false, nil
}

// Stop has nothing to release.
func (f *Files) Stop(context.Context) error { return nil }
